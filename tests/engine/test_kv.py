"""KV cache and generation cost (archcalc.engine.kv), against hand calculations:
cache per token = 2 * layers * kv_heads * head_dim * bytes for decoders whose K and V heads are alike."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from onnx import helper
from onnx_models import make_model, tensor_input

import archcalc
from archcalc.cli.main import cli
from archcalc.core.errors import ArchcalcError
from archcalc.engine.kv import decode_cost, generation, kv_cache
from archcalc.engine.symbolic import formulas

SEQ = {"input_ids": ("batch", "seq")}


def _analysis(spec: str, **dims: int):
    return archcalc.analyze(spec, input_shapes=SEQ, dims={"seq": 16, **dims})


def test_llama_gqa_cache_per_token():
    """Llama-3.2-1B: 16 layers, 8 key/value heads of 64 (for 32 query heads)."""
    cache = kv_cache(_analysis("specs/llama_3_2_1b.yaml"), "fp16")
    assert cache is not None and cache.source == "causal Attention layers"
    assert len(cache.layers) == 16
    assert {(layer.kv_heads, layer.head_size, layer.q_heads) for layer in cache.layers} == {(8, 64, 32)}
    assert cache.bytes_per_token == 2 * 16 * 8 * 64 * 2 == 32_768
    assert cache.bytes_at(2048, 4) == 32_768 * 2048 * 4 == 256 * 2**20
    assert cache.seq == "seq"


def test_gpt2_cache_in_its_own_dtype_and_others():
    analysis = _analysis("specs/gpt2.yaml")
    assert kv_cache(analysis).bytes_per_token == 2 * 12 * 12 * 64 * 4  # fp32 keys: 73,728
    assert kv_cache(analysis, "int8").bytes_per_token == 2 * 12 * 12 * 64 * 1


def test_multi_query_attention(tmp_path):
    spec = tmp_path / "mqa.yaml"
    spec.write_text("name: mqa\ninput: [seq, 256]\nlayers:\n"
                    "  - attention: {heads: 8, kv_heads: 1, causal: true}\n    repeat: 3\n")
    cache = kv_cache(archcalc.analyze(str(spec), dims={"seq": 4}), "fp16")
    assert cache.bytes_per_token == 2 * 3 * 1 * 32 * 2  # 3 layers, one K/V head of 256 / 8 = 32


def test_encoders_have_no_cache():
    assert kv_cache(archcalc.analyze("specs/bert_base.yaml")) is None
    with pytest.raises(ArchcalcError, match="no decoder found"):
        generation(archcalc.analyze("specs/bert_base.yaml"), {}, (), 128, None)


def test_prefill_equals_the_bound_analysis_at_the_prompt_length():
    analysis = _analysis("specs/llama_3_2_1b.yaml")
    result = generation(analysis, {}, (), 37, None)
    bound = archcalc.analyze("specs/llama_3_2_1b.yaml", input_shapes=SEQ, dims={"seq": 37}).totals
    assert (result.prefill.macs, result.prefill.flops, result.prefill.peak_activation_bytes) == (
        bound.macs, bound.flops, bound.peak_activation_bytes)


def test_decode_per_token_by_hand():
    """GPT-2 small, one token with C = 100 cached: every weight once per token (12 layers of
    768*2304 + 768*768 + 2*768*3072, the LM head 768*50257), and per layer 12 heads reading
    101 keys and values of 64: 12 * 101 * 128."""
    analysis = _analysis("specs/gpt2.yaml")
    cache = kv_cache(analysis, "fp16")
    weights = 12 * (768 * 2304 + 768 * 768 + 2 * 768 * 3072) + 768 * 50257
    decode = decode_cost(formulas(analysis), cache, 100, {"batch": 1}, "gpt2")
    assert decode.macs == weights + 12 * 12 * 101 * 128
    # bytes moved: fp32 weights once, 100 cached tokens read, one written
    assert decode.bytes_moved == analysis.totals.weight_bytes + 36_864 * 101
    at_batch = decode_cost(formulas(analysis), cache, 100, {"batch": 3}, "gpt2")
    assert at_batch.macs == 3 * decode.macs


def test_past_key_value_inputs(tmp_path):
    """An ONNX decoder step: past_key_values.0.key/value [B, 4, P, 16] joined with the new [B, 4, S, 16]."""
    nodes = [helper.make_node("Concat", [f"past_key_values.0.{kv}", f"new_{kv}"], [f"present.0.{kv}"], axis=2,
                              name=f"cat_{kv}") for kv in ("key", "value")]
    inputs = [tensor_input(f"past_key_values.0.{kv}", ["B", 4, "P", 16]) for kv in ("key", "value")]
    inputs += [tensor_input(f"new_{kv}", ["B", 4, "S", 16]) for kv in ("key", "value")]
    model = make_model(nodes, inputs, ["present.0.key", "present.0.value"])
    path = tmp_path / "step.onnx"
    path.write_bytes(model.SerializeToString())
    cache = kv_cache(archcalc.analyze(str(path), dims={"P": 5, "S": 1}))
    assert cache.source == "past key/value inputs"
    assert cache.bytes_per_token == 2 * 4 * 16 * 4  # K and V, 4 heads of 16, fp32


def run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == code, result.output
    return result.output


def test_cli_context(monkeypatch):
    monkeypatch.chdir(Path(__file__).parents[2])
    llama = ("analyze", "specs/llama_3_2_1b.yaml", "--input-shape", "input_ids=batch,seq")
    document = json.loads(run(*llama, "--context", "2048", "--kv-dtype", "fp16", "--format", "json"))
    g = document["generation"]
    assert (g["kv_cache_bytes_per_token"], g["kv_cache_bytes"]) == (32_768, 32_768 * 2048)
    # prefill: 1,235,746,816 weight MACs per token, and 16 layers x 32 heads x 2048^2 x (64 + 64)
    assert g["prefill"]["macs"] == 1_235_746_816 * 2048 + 16 * 32 * 2048 * 2048 * 128 == document["totals"]["macs"]
    assert g["decode"]["macs_per_token"] == 1_235_746_816 + 16 * 32 * 2049 * 128
    assert document["bindings"] == {"batch": 1, "seq": 2048}
    table = run(*llama, "--context", "2048", "--kv-dtype", "fp16")
    assert "32,768 B (16 x 2,048 B) per sequence" in table and "64.00 MiB" in table
    assert "| KV cache per token |" in run(*llama, "--context", "8", "--format", "markdown")
    assert "add --context" in run(*llama, "--kv-dtype", "fp16", code=2)
    assert "--format json" in run(*llama, "--context", "8", "--format", "csv", code=2)
    assert "no decoder found" in run("analyze", "specs/bert_base.yaml", "--context", "8", code=2)


def test_budget_kv_cache_and_macs_at_a_context(monkeypatch, tmp_path):
    """Llama-3.2-1B at 2048 tokens: cache 2 * 16 * 8 * 64 * 4 B (fp32) * 2048 = 128 MiB;
    prefill 1,235,746,816 * 2048 + 16 * 32 * 2048^2 * 128 = 2,805,687,386,112 MACs."""
    monkeypatch.chdir(Path(__file__).parents[2])
    budget = tmp_path / "b.yaml"
    llama = ("check", "specs/llama_3_2_1b.yaml", "--input-shape", "input_ids=batch,seq", "--budget", str(budget),
             "--format", "json")
    budget.write_text("dims: {seq: 2048}\ntotal:\n  kv_cache: 128MiB\n  macs: 2805687386112\n")
    text = json.dumps(json.loads(run(*llama)))
    assert '"actual": 134217728' in text and '"actual": 2805687386112' in text
    budget.write_text("dims: {seq: 2048}\ntotal:\n  kv_cache: 127MiB\n")
    run(*llama, code=1)
    budget.write_text("total:\n  kv_cache: 1GiB\n")
    assert "no decoder" in run("check", "specs/bert_base.yaml", "--budget", str(budget), code=2)
    assert "not a symbolic dim" in run("check", "specs/gpt2.yaml", "--budget", str(budget), code=2)


def test_cache_described_by_the_user(monkeypatch):
    """Where detection fails (BERT has no causal attention): 12 layers x 2 x 12 heads x 64 x 2 B (fp16)."""
    monkeypatch.chdir(Path(__file__).parents[2])
    bert = ("analyze", "specs/bert_base.yaml", "--context", "512")
    g = json.loads(run(*bert, "--kv-layers", "12", "--kv-heads", "12", "--head-dim", "64", "--format", "json"))[
        "generation"]
    assert g["source"] == "given by --kv-layers, --kv-heads, --head-dim"
    assert g["kv_cache_bytes_per_token"] == 12 * 2 * 12 * 64 * 2 and g["kv_cache_bytes"] == 36_864 * 512
    assert "describe the cache together" in run(*bert, "--kv-heads", "12", code=2)


def test_serve_fit_is_the_largest_context(monkeypatch):
    """The context found fits and one more token does not, each side checked with a bound analysis:
    weights + fp16 cache (32,768 B per token) + the prefill's peak activations at seq = C."""
    monkeypatch.chdir(Path(__file__).parents[2])
    document = json.loads(run("analyze", "specs/llama_3_2_1b.yaml", "--input-shape", "input_ids=batch,seq",
                              "--context", "16", "--kv-dtype", "fp16", "--serve-fit", "6GiB", "--format", "json"))
    context = document["generation"]["fit"]["largest_context"]

    def serve(c: int) -> int:
        totals = archcalc.analyze("specs/llama_3_2_1b.yaml", input_shapes=SEQ, dims={"seq": c}).totals
        return totals.weight_bytes + 32_768 * c + totals.peak_activation_bytes

    assert context > 16 and serve(context) <= 6 * 2**30 < serve(context + 1)
    assert "add --context" in run("analyze", "specs/gpt2.yaml", "--serve-fit", "1GiB", code=2)


def test_serve_fit_is_also_the_largest_batch(monkeypatch):
    """With --context 4096 and 24 GiB, the batch searched: B sequences fit and B + 1 do not, each
    side checked with a bound analysis at seq = 4096, batch = B: weights + fp16 cache (32,768 B per
    token and sequence) * 4096 * B + the prefill's peak activations (by hand at the time of writing:
    B = 8 takes 22.49 GiB, B = 9 24.60 GiB)."""
    monkeypatch.chdir(Path(__file__).parents[2])
    output = run("analyze", "specs/llama_3_2_1b.yaml", "--input-shape", "input_ids=batch,seq", "--context", "4096",
                 "--kv-dtype", "fp16", "--serve-fit", "24GiB", "--format", "json")
    fit = json.loads(output)["generation"]["fit"]
    batch = fit["largest_batch"]

    def serve(b: int) -> int:
        totals = archcalc.analyze("specs/llama_3_2_1b.yaml", input_shapes=SEQ, dims={"seq": 4096, "batch": b}).totals
        return totals.weight_bytes + 32_768 * 4096 * b + totals.peak_activation_bytes

    assert batch == 8 and serve(batch) <= 24 * 2**30 < serve(batch + 1)
    assert fit["largest_context"] > 4096  # the context searched too, at batch 1
    table = run("analyze", "specs/llama_3_2_1b.yaml", "--input-shape", "input_ids=batch,seq", "--context", "4096",
                "--kv-dtype", "fp16", "--serve-fit", "24GiB")
    assert "up to a batch of 8 sequences (batch searched at 4,096 tokens of context)" in table
    assert "(context searched at batch 1)" in table


def test_serve_fit_of_a_decoder_with_past_inputs():
    """qwen3_cache (tests/fixtures/decoders): the prompt is seq = C with past_seq = 0."""
    from archcalc.engine.kv import largest_batch, largest_context
    from archcalc.engine.symbolic import analyze_unbound

    graph = archcalc.load("tests/fixtures/decoders/qwen3_cache.onnx")
    analysis = analyze_unbound(graph, {})
    cache = kv_cache(analysis)

    def serve(b: int, c: int) -> int:
        totals = archcalc.analyze(graph, dims={"seq": c, "batch": b, "past_seq": 0}).totals
        return totals.weight_bytes + 512 * c * b + totals.peak_activation_bytes

    memory = 2**20
    context = largest_context(analysis, {}, graph.batch_dims, memory, cache)
    assert serve(1, context) <= memory < serve(1, context + 1)
    batch = largest_batch(analysis, {}, graph.batch_dims, memory, cache, 16)
    assert serve(batch, 16) <= memory < serve(batch + 1, 16)
