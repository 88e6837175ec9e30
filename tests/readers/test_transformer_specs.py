"""Transformer layers of the spec language, and the bundled transformer specs.

Each layer type's params and MACs are worked by hand beside the assertion; the bundled
specs equal the library models' own counts (tests/fixtures/transformer_reference.json,
made by tests/fixtures/make_transformer_reference.py from Hugging Face's and torchvision's
models built from their configs); the layers run in onnxruntime with zero mismatches.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from archcalc.cli.main import cli
from archcalc.engine.inference import analyze
from archcalc.readers.spec.build import parse_spec
from archcalc.readers.spec.transformer import _relative_buckets

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = json.loads((ROOT / "tests" / "fixtures" / "transformer_reference.json").read_text())
TRANSFORMER_SPECS = ("bert_base", "gpt2", "vit_b_16", "llama_3_2_1b", "t5_small_encoder", "whisper_tiny_encoder")


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def analysed(text: str):
    return analyze(parse_spec(text, "t.yaml"))


def layer(analysis, name: str):
    found = analysis.layer(name)
    assert found is not None, name
    return found


def parts(analysis, prefix: str):
    """The layers of one spec layer lowered to several ops (or of a block)."""
    return [x for x in analysis.layers if x.name == prefix or x.name.startswith(prefix + ".")]


# -- the bundled specs equal the library models ----------------------------------------------

@pytest.mark.parametrize("spec", TRANSFORMER_SPECS)
def test_bundled_spec_equals_the_library_model(spec):
    totals = analyze(parse_spec((ROOT / "specs" / f"{spec}.yaml").read_text(), f"specs/{spec}.yaml")).totals
    reference = REFERENCE[spec]
    assert totals.params == reference["params"]
    # Whisper does not train its position table (requires_grad False): `trainable: false` there
    assert totals.trainable_params == reference["trainable_params"]
    assert abs(totals.macs - reference["macs"]) <= reference["macs"] / 100


def test_published_totals_are_the_reference():
    # The counts the issue names (BertModel, GPT2LMHeadModel with its tied head, torchvision's
    # vit_b_16, a tied Llama-3.2-1B), so the fixture itself is checked against published figures.
    assert REFERENCE["bert_base"]["params"] == 109_482_240
    assert REFERENCE["gpt2"]["params"] == 124_439_808
    assert REFERENCE["vit_b_16"]["params"] == 86_567_656
    assert REFERENCE["llama_3_2_1b"]["params"] == 1_235_814_400


def test_reference_attention_macs_are_counted_eagerly():
    # Eager attention shows as bmm in FlopCounterMode: GPT-2 at 1024 tokens has, per layer,
    # Q K^T and scores x V of 12 heads * 1024 * 1024 * 64 MACs each: 12 layers * 2 * 12 * 1024^2 * 64.
    assert REFERENCE["gpt2"]["macs_by_op"]["aten.bmm"] == 12 * 2 * 12 * 1024 * 1024 * 64
    # and the tied LM head is a plain mm of 1024 tokens x 768 x 50257.
    assert REFERENCE["gpt2"]["macs_by_op"]["aten.mm"] == 1024 * 768 * 50257


LLAMA_SMALL_VOCAB = 512


def test_llama_layers_verify_in_onnxruntime(tmp_path):
    # The bundled spec's 1.2 B weights take 6 GB to generate: the same layers (GQA 32/8 with
    # head_dim 64, rotary, SwiGLU 8192, RMSNorm, tied head) with a 512-token table and 2 of
    # the 16 layers, at 16 tokens.
    text = (ROOT / "specs" / "llama_3_2_1b.yaml").read_text()
    small = text.replace("128256", str(LLAMA_SMALL_VOCAB)).replace("repeat: 16", "repeat: 2")
    assert small.count(str(LLAMA_SMALL_VOCAB)) == 2 and "repeat: 2" in small
    path = tmp_path / "llama_small.yaml"
    path.write_text(small)
    result = run("verify", str(path), "--input-shape", "input_ids=1,16", "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] and report["mismatches"] == [] and report["layers_checked"] == report["layers_total"]


# -- each layer type by hand --------------------------------------------------------------------

GPT_LIKE = """
input: {ids: {shape: [10], dtype: int64}}
layers:
  - embedding: {vocab: 50, dim: 16}
    name: wte
  - positional: {kind: learned, max_positions: 12}
    name: wpe
  - attention: {heads: 4, causal: true}
    name: attn
  - mlp: {hidden: 32}
    name: mlp
  - project: {units: 50, bias: false, tie: wte}
    name: head
"""


def test_embedding_positions_attention_mlp_and_tied_head_by_hand():
    a = analysed(GPT_LIKE)
    assert a.tensors["ids"].dtype == "int64"
    # embedding: a 50 x 16 table; 10 tokens -> [1, 10, 16]
    assert layer(a, "wte").params == 50 * 16 and a.tensors["wte"].shape[1:] == (10, 16)
    # learned positions: the whole 12 x 16 table is params, 10 rows of it are added
    assert sum(x.params for x in parts(a, "wpe")) == 12 * 16
    assert a.tensors["wpe.rows"].shape == (10, 16)
    # attention: 4 projections 16 -> 16 with biases: 4 * (16 * 16 + 16) = 1088 params;
    # MACs: 4 projections of 10 tokens 10 * 16 * 16 = 2560 each, and Q K^T + A V:
    # 4 heads * 10 * 10 * (4 + 4) = 3200
    attention = parts(a, "attn")
    assert sum(x.params for x in attention) == 4 * (16 * 16 + 16)
    assert sum(x.macs for x in attention) == 4 * 10 * 16 * 16 + 4 * 10 * 10 * (4 + 4)
    assert layer(a, "attn.attention").macs == 4 * 10 * 10 * 8
    # mlp: 16 -> 32 -> 16 with biases: 16 * 32 + 32 + 32 * 16 + 16 = 1072; MACs 2 * 10 * 16 * 32
    assert sum(x.params for x in parts(a, "mlp")) == 1072
    assert sum(x.macs for x in parts(a, "mlp")) == 2 * 10 * 16 * 32
    # tied head: no params of its own (the table is counted once, at wte); MACs 10 * 16 * 50
    assert sum(x.params for x in parts(a, "head")) == 0
    assert sum(x.macs for x in parts(a, "head")) == 10 * 16 * 50
    assert a.tensors["head"].shape[1:] == (10, 50)
    assert a.totals.params == 50 * 16 + 12 * 16 + 1088 + 1072


def test_tied_embeddings_share_one_table():
    a = analysed("""
input: {src: {shape: [5], dtype: int64}, tgt: {shape: [3], dtype: int64}}
layers:
  - embedding: {vocab: 30, dim: 8}
    name: shared
    inputs: [src]
  - embedding: {vocab: 30, dim: 8, tie: shared}
    name: decoder_embed
    inputs: [tgt]
""")
    # one 30 x 8 table, looked up twice
    assert a.totals.params == 30 * 8 and layer(a, "decoder_embed").params == 0
    assert a.tensors["decoder_embed"].shape[1:] == (3, 8)


def test_grouped_query_rotary_attention_by_hand():
    a = analysed("""
input: {ids: {shape: [6], dtype: int64}}
layers:
  - embedding: {vocab: 20, dim: 32}
  - attention: {heads: 8, kv_heads: 2, head_dim: 4, bias: false, positional: rotary, causal: true}
    name: attn
""")
    # q: 32 -> 8 * 4 = 32; k, v: 32 -> 2 * 4 = 8 each; out: 32 -> 32. No biases:
    # 32 * 32 + 2 * 32 * 8 + 32 * 32 = 2560
    assert sum(x.params for x in parts(a, "attn")) == 2560
    assert a.tensors["attn.k_proj"].shape[1:] == (6, 8)
    assert a.tensors["attn.position_ids"].shape[1:] == (6,)
    # rotation of 6 tokens x 8 heads x 4 = 192 query elements, 3 FLOPs each
    assert layer(a, "attn.q_rotary").flops == 3 * 6 * 8 * 4
    # GQA: each of 8 query heads attends over 6 keys: 8 * 6 * 6 * (4 + 4)
    assert layer(a, "attn.attention").macs == 8 * 6 * 6 * 8


def test_cross_attention_takes_keys_and_values_from_its_second_input():
    a = analysed("""
input: {x: [5, 16], memory: [7, 24]}
layers:
  - attention: {heads: 2, cross: true}
    name: cross
    inputs: [x, memory]
""")
    # k and v project the memory's 24 features to 16: 2 * (24 * 16 + 16); q and out 2 * (16 * 16 + 16)
    assert sum(x.params for x in parts(a, "cross")) == 2 * (24 * 16 + 16) + 2 * (16 * 16 + 16)
    # 2 heads, 5 queries over 7 keys, head size 8: 2 * 5 * 7 * (8 + 8)
    assert layer(a, "cross.attention").macs == 2 * 5 * 7 * 16
    assert a.tensors["cross"].shape[1:] == (5, 16)


def test_relative_bias_table_is_shared_and_counted_once():
    a = analysed("""
input: {ids: {shape: [9], dtype: int64}}
layers:
  - embedding: {vocab: 10, dim: 8}
  - transformer_block: {heads: 2, mlp_hidden: 8, bias: false, norm: rmsnorm, relative_buckets: 8,
                        relative_max_distance: 16, relative_bias_from: block.0.attn, scale: 1.0}
    name: block
    repeat: 3
""")
    # the table is 8 buckets x 2 heads, held by the first layer only
    assert layer(a, "block.0.attn.relative.bias").params == 8 * 2
    assert layer(a, "block.1.attn.relative.bias").params == 0
    assert a.tensors["block.2.attn.relative.scores_bias"].shape == (1, 2, 9, 9)
    # per block: rms 8 + attention 4 * 8 * 8 + rms 8 + mlp 2 * 8 * 8 = 400; + table 16 + embedding 80
    assert a.totals.params == 3 * 400 + 16 + 80


def test_relative_buckets_are_t5s():
    # T5's _relative_position_bucket, bidirectional, 32 buckets, max_distance 128: 16 per
    # direction (keys after the query from 16 on), exact up to 8 apart, then
    # 8 + int(log(n / 8) / log(128 / 8) * 8), at most 15.
    table = _relative_buckets(32, 128)
    bucket = {relative: table[relative + 128] for relative in range(-128, 129)}
    assert bucket[0] == 0 and bucket[-1] == 1 and bucket[1] == 17 and bucket[-7] == 7 and bucket[7] == 23
    assert bucket[-8] == 8 and bucket[8] == 24
    assert bucket[-20] == 8 + int(math.log(20 / 8) / math.log(16) * 8) == 10
    assert bucket[-128] == 15 and bucket[128] == 31
    assert bucket[-100] == min(15, 8 + int(math.log(100 / 8) / math.log(16) * 8)) == 15


def test_gated_mlp_rmsnorm_patch_embed_by_hand():
    a = analysed("""
input: {x: [4, 16]}
layers:
  - rmsnorm:
    name: norm
  - mlp: {hidden: 40, gated: true, activation: silu, bias: false}
    name: ffn
""")
    assert layer(a, "norm").params == 16
    # gate and up 16 -> 40, down 40 -> 16: 3 * 16 * 40; MACs per token the same, 4 tokens
    assert sum(x.params for x in parts(a, "ffn")) == 3 * 16 * 40
    assert sum(x.macs for x in parts(a, "ffn")) == 4 * 3 * 16 * 40
    assert [x.op for x in parts(a, "ffn")] == ["MatMul", "MatMul", "Swish", "Mul", "MatMul"]
    v = analysed("""
input: [3, 32, 32]
layers:
  - patch_embed: {dim: 24, patch: 8, class_token: true}
    name: patches
""")
    # (32 / 8)^2 = 16 patches + the class token; conv 24 * 3 * 8 * 8 + 24 bias, token 24
    assert v.tensors["patches"].shape[1:] == (17, 24)
    assert sum(x.params for x in parts(v, "patches")) == 24 * 3 * 8 * 8 + 24 + 24
    assert sum(x.macs for x in parts(v, "patches")) == 16 * 24 * 3 * 8 * 8


def test_sinusoidal_positions_are_a_buffer_sized_to_the_input():
    a = analysed("""
input: {x: [6, 8]}
layers:
  - positional: sinusoidal
    name: pe
""")
    assert a.totals.params == 0 and a.totals.buffers == 6 * 8


def test_post_norm_block_normalises_after_each_residual():
    a = analysed("""
input: {x: [3, 8]}
layers:
  - transformer_block: {heads: 2, mlp_hidden: 16, norm_first: false}
    name: b
""")
    top = [x.name for x in a.layers if x.name.count(".") == 1]
    assert top == ["b.attn", "b.residual_1", "b.post_ln_1", "b.mlp", "b.residual_2", "b.post_ln_2"]
    pre = analysed("input: {x: [3, 8]}\nlayers:\n  - transformer_block: {heads: 2, mlp_hidden: 16}\n    name: b\n")
    assert [x.name for x in pre.layers if x.name.count(".") == 1] == \
        ["b.ln_1", "b.attn", "b.residual_1", "b.ln_2", "b.mlp", "b.residual_2"]
    # post-norm's second residual adds the normalised first sum; pre-norm's the raw sum
    assert layer(a, "b.residual_2").inputs[1].name == "b.post_ln_1"
    assert layer(pre, "b.residual_2").inputs[1].name == "b.residual_1"


def test_decoder_block_attends_to_the_encoder_output():
    a = analysed("""
input: {tgt: [4, 8], memory: [6, 8]}
layers:
  - transformer_block: {heads: 2, mlp_hidden: 16, causal: true, cross: true}
    name: dec
    inputs: [tgt, memory]
""")
    top = [x.name for x in a.layers if x.name.count(".") == 1]
    assert top == ["dec.ln_1", "dec.attn", "dec.residual_1", "dec.ln_cross", "dec.cross_attn", "dec.residual_cross",
                   "dec.ln_2", "dec.mlp", "dec.residual_2"]
    assert layer(a, "dec.cross_attn.k_proj.matmul").inputs[0].name == "memory"
    assert layer(a, "dec.residual_2").inputs[1].name == "dec.residual_cross"
    # 3 layernorms 3 * 2 * 8, two attentions 2 * 4 * (8 * 8 + 8), mlp 8 * 16 + 16 + 16 * 8 + 8
    assert a.totals.params == 3 * 16 + 2 * 4 * 72 + 280
    # 2 heads, 4 queries over 6 encoder positions, head size 4: 2 * 4 * 6 * (4 + 4)
    assert layer(a, "dec.cross_attn.attention").macs == 2 * 4 * 6 * 8
    post = analysed("""
input: {tgt: [4, 8], memory: [6, 8]}
layers:
  - transformer_block: {heads: 2, mlp_hidden: 16, cross: true, norm_first: false}
    name: dec
    inputs: [tgt, memory]
""")
    assert layer(post, "dec.residual_2").inputs[1].name == "dec.post_ln_cross"
    assert layer(post, "dec.residual_cross").inputs[1].name == "dec.post_ln_1"


def test_a_user_block_of_the_same_name_replaces_the_built_in_one():
    a = analysed("""
input: [4]
blocks:
  transformer_block:
    layers:
      - relu
layers:
  - transformer_block:
    name: t
""")
    assert [x.op for x in a.layers] == ["Relu"]


def test_explain_shows_every_op_of_a_lowered_layer():
    result = run("explain", "specs/gpt2.yaml", "h.0.attn")
    assert result.exit_code == 0, result.output
    for name in ("h.0.attn.q_proj.matmul", "h.0.attn.attention (Attention)", "h.0.attn.out_proj.matmul"):
        assert name in result.output
    # the attention products, numbers substituted: 12 heads, 1024 queries and keys, 64 + 64
    assert "1 * 12 * 1024 * 1024 * (64 + 64) = 1610612736" in result.output.replace("batch", "1")


def test_transformer_spec_exports_and_verifies(tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(GPT_LIKE)
    result = run("verify", str(spec), "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["mismatches"] == []


# -- bad input: exit 2, the layer named, a fix ---------------------------------------------------

BAD = {
    "rotary_as_a_layer": ("- positional: rotary", "attention layers `positional: rotary`"),
    "learned_without_size": ("- positional: learned", "add max_positions"),
    "kv_heads_not_dividing": ("- attention: {heads: 6, kv_heads: 4}", "multiple of kv_heads"),
    "rotary_cross": ("- attention: {heads: 2, cross: true, positional: rotary}\n    inputs: [x, x]",
                     "self-attention"),
    "too_few_buckets": ("- attention: {heads: 2, relative_buckets: 2}", "use 4 or more"),
    # 32 buckets: 8 exact per direction, so distances must reach past 8 (log(8 / 8) = 0 divides)
    "distance_within_exact": ("- attention: {heads: 2, relative_buckets: 32, relative_max_distance: 8}",
                              "more than relative_buckets / 4 = 8"),
    # a bucket table of 2e9 entries would take minutes to build
    "distance_huge": ("- attention: {heads: 2, relative_buckets: 32, relative_max_distance: 1000000000}",
                      "at most 65536"),
    "table_over_int64": ("- positional: {kind: learned, max_positions: 4611686018427387904}",
                         "more than int64 counts"),
    "heads_not_splitting": ("- attention: {heads: 3}", "do not split into 3 heads"),
    "tie_to_nothing": ("- project: {units: 4, tie: nowhere}", "'nowhere.weight', which no earlier layer holds"),
    "embedding_tie_to_nothing": ("- embedding: {vocab: 4, dim: 2, tie: nowhere}", "no earlier layer holds"),
    "bad_perm": ("- transpose: [0, 0, 1]", "every axis once"),
    "bad_activation": ("- mlp: {hidden: 4, activation: swoosh}", "one of relu, gelu"),
    "sequence_too_long": ("- positional: {kind: learned, max_positions: 2}", "more than the table's max_positions 2"),
    "bad_norm": ("- transformer_block: {heads: 2, mlp_hidden: 4, norm: batchnorm}", "norm: layernorm or norm: rmsnorm"),
    "decoder_without_memory": ("- transformer_block: {heads: 2, mlp_hidden: 4, cross: true}",
                               "refers to block input 1, but the block has 1"),
    "rms_post_norm": ("- transformer_block: {heads: 2, mlp_hidden: 4, norm: rmsnorm, norm_first: false}",
                      "post-norm"),
    "patch_embed_on_tokens": ("- patch_embed: {dim: 4, patch: 2}", "needs an image"),
    "attention_on_flat": ("- flatten\n  - attention: 2", "input of rank 3 or more"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_transformer_layer_is_exit_2_with_a_fix(tmp_path, case):
    layer_text, expected = BAD[case]
    spec = tmp_path / "bad.yaml"
    spec.write_text(f"input: {{x: [3, 8]}}\nlayers:\n  {layer_text}\n")
    result = run("analyze", str(spec))
    assert result.exit_code == 2, result.output
    assert expected in result.output and "Traceback" not in result.output
    assert "bad.yaml" in result.output and "fix:" in result.output


def test_bad_input_mapping_is_exit_2(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("input: {ids: {shape: [4], dtype: int64, extra: 1}}\nlayers:\n  - relu\n")
    result = run("analyze", str(spec))
    assert result.exit_code == 2 and "write `{shape: [128], dtype: int64}`" in result.output
    spec.write_text("input: {ids: {shape: [4], dtype: int65}}\nlayers:\n  - relu\n")
    result = run("analyze", str(spec))
    assert result.exit_code == 2 and "did you mean 'int64'" in result.output


def test_layers_lists_the_transformer_types_and_the_built_in_block():
    result = run("layers")
    assert result.exit_code == 0
    assert "attention (also: multi_head_attention, mha): multi-head attention" in result.output
    assert "heads, kv_heads=None, head_dim=None, causal=False" in result.output
    assert "transformer_block (built-in block)" in result.output
    assert "heads, mlp_hidden, kv_heads=$heads" in result.output


def test_a_tied_head_trains_the_shared_table():
    from archcalc.engine.training import training_cost

    graph = parse_spec(GPT_LIKE, "t.yaml")
    step = training_cost(graph, analyze(graph))
    head = {x.name: x for x in step.layers}["head"]
    # dL/dx and dL/dW of the head's 10 x 16 x 50 product: the transposed table is the
    # embedding's trainable weight, which the embedding's own Gather counts as params
    assert head.grad_input_macs + head.grad_weight_macs == 2 * 10 * 16 * 50


def test_export_needs_opset_23_for_attention(tmp_path):
    # Attention, RotaryEmbedding and RMSNormalization became standard ops in opset 23.
    result = run("export", str(ROOT / "specs" / "gpt2.yaml"), "-o", str(tmp_path / "g.onnx"), "--opset", "17",
                 "--weights", "omit")
    assert result.exit_code == 2 and "op Attention needs opset 23 or newer, asked for 17" in result.output
    spec = tmp_path / "rms.yaml"
    spec.write_text("input: {x: [3, 8]}\nlayers:\n  - rmsnorm\n")
    result = run("export", str(spec), "-o", str(tmp_path / "r.onnx"), "--opset", "22")
    assert result.exit_code == 2 and "op RMSNormalization needs opset 23" in result.output
