"""The graphs people deploy, counted as exactly as their source.

Small BERT, DistilBERT, GPT-2, Qwen3, ViT and CLIP text models (transformers, from configs),
a Stable Diffusion GEGLU feed-forward block and small CNNs, exported by torch and then
rewritten by onnxruntime's own tools: the transformer optimizer, the graph optimizations
saved at the extended level and at the highest (channel-blocked com.microsoft.nchwc ops;
channels-last QLinearConv in the quantised graph), dynamic, QDQ and QOperator
quantization, int4 weight packing (MatMulNBits, GatherBlockQuantized, int4 QDQ) and fp16
conversion; GPT-2's and ViT's attention fused into com.microsoft Attention by the
generator itself (onnxruntime 1.32's fusions do not match transformers 5's attention), and
the extended graph's FusedMatMul in its older TransposeMatMul form.
tests/fixtures/deployed/make_deployed_fixtures.py writes them by hand (weights stripped),
each beside the shape and dtype of every tensor onnxruntime produced running it, and the
source model's params and MACs counted in torch.

Every variant does the arithmetic of its source, so for each archcalc must infer
onnxruntime's shape and dtype of every tensor, model every op, and count the source's
params and MACs exactly:

- params: learned elements, whatever their storage. A quantised weight (int8, uint8,
  int4) counts its elements, an int32 quantised bias (QDQ's, QLinearConv's, QGemm's) its
  elements, a packed int4 blob (MatMulNBits' uint8 [N, blocks, blob]) two values per byte:
  as many params as the float tensor it stands for. Quantisation scales and zero points
  are not params (fixed by calibration or by the quantizer, not learned), as for
  QLinearConv in README's counting conventions;
- MACs: the fused and quantised ops count the products of the float ops they replace
  (Attention and QAttention its projections and two attention products, MatMulNBits,
  MatMulInteger, DynamicQuantizeMatMul, QGemm, QLinearConv, FusedConv their MatMul, Gemm
  or Conv), so every variant's MACs equal the source's, none approximately;
- weight bytes: the params' bytes as stored (int8 one, int4 half, fp16 two per value), so
  they show what quantisation saves; the scales and zero points are the rest of the file's
  initializers (``initializer_bytes`` recorded before stripping).

Writing these fixtures found three bugs, now fixed and pinned here: QDQ's int32 biases
(int32 -> DequantizeLinear -> Conv's bias) not counted as params (the small ResNet's QDQ
graph 90 params short), int4 weights counted 4 bytes per value in weight bytes (BERT's int4
graph 98,048 bytes where 60,864 are stored), and verify warning while filling int4
weights with random floats.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto
from onnx_models import assert_recorded_shapes
from ort_helpers import missing_nchwc_kernels

from archcalc.core.results import Analysis
from archcalc.engine.inference import analyze
from archcalc.readers.onnx import load_onnx

FIXTURES = Path(__file__).parents[1] / "fixtures" / "deployed"
NAMES = sorted(path.stem for path in FIXTURES.glob("*.onnx"))
MS = "com.microsoft:"
NCHWC = "com.microsoft.nchwc:"

# The ops that make each variant what it is (the tool did its rewrite): each must be in the graph.
KEY_OPS = {
    "bert_source": {"MatMul", "Softmax", "LayerNormalization", "Gather"},
    "bert_optimized": {MS + "Attention", MS + "EmbedLayerNormalization", MS + "SkipLayerNormalization",
                       MS + "BiasGelu"},
    "bert_dynamic": {"DynamicQuantizeLinear", "MatMulInteger", "DequantizeLinear"},
    "bert_dynamic_extended": {MS + "DynamicQuantizeMatMul", MS + "MatMulIntegerToFloat", MS + "FusedMatMul",
                              MS + "Gelu", MS + "SkipLayerNormalization"},
    "bert_optimized_dynamic": {MS + "QAttention", MS + "QEmbedLayerNormalization", "MatMulInteger",
                               MS + "SkipLayerNormalization", MS + "BiasGelu"},
    "bert_int4": {MS + "MatMulNBits", MS + "GatherBlockQuantized"},
    "bert_int4_qdq": {"DequantizeLinear"},
    "bert_fp16": {MS + "Attention", MS + "EmbedLayerNormalization", MS + "SkipLayerNormalization"},
    "distilbert_source": {"MatMul", "Softmax", "LayerNormalization"},
    "distilbert_optimized": {MS + "Attention", MS + "EmbedLayerNormalization", MS + "SkipLayerNormalization",
                             MS + "BiasGelu"},
    "distilbert_optimized_dynamic": {MS + "QAttention", MS + "QEmbedLayerNormalization", "MatMulInteger"},
    "gpt2_source": {"Gemm", "MatMul", "Softmax", "LayerNormalization"},
    "gpt2_optimized": {MS + "FastGelu", MS + "SkipLayerNormalization"},
    "gpt2_fp16": {MS + "FastGelu", MS + "SkipLayerNormalization"},
    "gpt2_attention_fused": {MS + "Attention", "Cast", MS + "FastGelu", MS + "SkipLayerNormalization"},
    "vit_source": {"Conv", "MatMul", "Softmax", "LayerNormalization"},
    "vit_optimized": {MS + "BiasGelu", MS + "SkipLayerNormalization"},
    "vit_fp16": {MS + "BiasGelu", MS + "SkipLayerNormalization"},
    "vit_attention_fused": {MS + "Attention", MS + "BiasGelu", MS + "SkipLayerNormalization"},
    "vit_all": {NCHWC + "Conv", NCHWC + "ReorderOutput", MS + "FusedMatMul", MS + "FusedGemm", MS + "BiasGelu"},
    "clip_source": {"MatMul", "Softmax", "Sigmoid", "LayerNormalization", "ArgMax"},
    "clip_optimized": {MS + "QuickGelu", MS + "SkipLayerNormalization"},
    "geglu_source": {"MatMul", "Erf", "Slice", "LayerNormalization"},
    "geglu_optimized": {MS + "BiasSplitGelu", MS + "BiasAdd", MS + "SkipLayerNormalization"},
    "qwen3_source": {"MatMul", "ReduceMean", "Softmax", "Sigmoid", "Cos", "Sin"},
    "qwen3_optimized": {"SimplifiedLayerNormalization", MS + "SkipSimplifiedLayerNormalization"},
    "qwen3_optimized_int4": {MS + "MatMulNBits", MS + "GatherBlockQuantized", "SimplifiedLayerNormalization"},
    "qwen3_fp16": {"SimplifiedLayerNormalization", MS + "SkipSimplifiedLayerNormalization"},
    "cnn_source": {"Conv", "Relu", "Add", "GlobalAveragePool", "Gemm"},
    "cnn_extended": {MS + "FusedConv"},
    "cnn_all": {NCHWC + "Conv", NCHWC + "GlobalAveragePool", NCHWC + "ReorderOutput"},
    "cnn_qoperator_all": {MS + "QLinearConv", MS + "QLinearAdd", MS + "QLinearGlobalAveragePool", "Transpose"},
    "cnn_qdq": {"QuantizeLinear", "DequantizeLinear", "Conv"},
    "cnn_qoperator": {"QLinearConv", MS + "QLinearAdd", MS + "QLinearGlobalAveragePool", MS + "QGemm"},
    "cnn_fp16_io": {"Conv", "Gemm"},  # plain opset ops, float16 from input to output
    "mixnet_source": {"Conv", "LeakyRelu", "MaxPool", "Concat", "Sigmoid", "Mul", "AveragePool", "MatMul"},
    "mixnet_extended": {MS + "FusedConv", MS + "FusedMatMul"},
    "mixnet_transpose_matmul": {MS + "TransposeMatMul", MS + "FusedConv"},
    "mixnet_all": {NCHWC + "Conv", NCHWC + "MaxPool", NCHWC + "AveragePool", NCHWC + "GlobalAveragePool",
                   NCHWC + "ReorderInput", NCHWC + "ReorderOutput", MS + "FusedMatMul"},
    "mixnet_qoperator": {"QLinearConv", "QLinearMatMul", MS + "QLinearLeakyRelu", MS + "QLinearConcat",
                         MS + "QLinearSigmoid", MS + "QLinearMul", MS + "QLinearAveragePool",
                         MS + "QLinearGlobalAveragePool", MS + "QGemm"},
    "mixnet_qoperator_all": {MS + "NhwcMaxPool", MS + "QLinearConv", MS + "QLinearLeakyRelu", MS + "QLinearConcat",
                             MS + "QLinearSigmoid", MS + "QLinearMul", MS + "QLinearAveragePool"},
}
# Values the exporter stored that torch does not learn, which an ONNX file cannot tell from
# learned ones without reading them: Qwen3's rotary inverse frequencies (a torch buffer of
# head_dim / 2 = 8 values) become a Constant node multiplying the positions, a weight to
# archcalc (as Swin-T's folded relative-position bias in test_exported_models.py).
NOT_LEARNED = {"qwen3": 8}
# Quantisation parameters as onnxruntime's quantizers name them.
QUANTISATION_PARAMS = re.compile(r"_(scale|scales|zero_point|zero_points)$")
SUB_BYTE_BITS = {TensorProto.INT4: 4, TensorProto.UINT4: 4}


def record(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def analysis(name: str) -> Analysis:
    """archcalc's analysis of a fixture, its dims bound to the recorded run's."""
    return analyze(load_onnx(str(FIXTURES / f"{name}.onnx")), record(name)["dims"])


def stored_bytes(tensor: TensorProto) -> int:
    bits = SUB_BYTE_BITS.get(tensor.data_type) or 8 * onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    return -(-math.prod(tensor.dims) * bits // 8)


def test_every_variant_is_there_with_its_key_ops():
    assert sorted(KEY_OPS) == NAMES
    for name, ops in KEY_OPS.items():
        assert ops <= set(record(name)["ops"]), name


@pytest.mark.parametrize("name", NAMES)
def test_fixture_is_small_stripped_and_fully_recorded(name):
    path = FIXTURES / f"{name}.onnx"
    assert path.stat().st_size < 100 * 1024
    model = onnx.load(str(path), load_external_data=False)
    weights = [t for t in model.graph.initializer if t.data_type != TensorProto.INT64 and math.prod(t.dims) > 16]
    assert weights and all(t.data_location == TensorProto.EXTERNAL and not t.raw_data for t in weights)
    locations = {e.value for t in weights for e in t.external_data if e.key == "location"}
    assert locations == {f"{name}.weights.bin"} and not (FIXTURES / f"{name}.weights.bin").exists()
    data = record(name)
    assert data["nodes"] == len(model.graph.node)
    produced = {out for node in model.graph.node for out in node.output if out}
    assert produced | set(data["input"]) == set(data["shapes"]) == set(data["dtypes"])
    assert data["dims"] == ({"batch": 2} if name.startswith(("cnn", "mixnet", "vit")) else {"batch": 2, "seq": 7})


def test_sources_are_the_configs():
    """The recorded torch figures, by hand. The ResNet: convs 3*16*9 + 2 * 16*16*9 + 16*32*9,
    BatchNorms 2 * (16 + 16 + 16 + 32), head 32*10 + 10; its MACs at batch 2, 32x32: stem
    32*32*16*27, two block convs 32*32*16*144 each, strided 16*16*32*144, head 320, times 2.
    Each BatchNorm folds into the conv before it: -C each (2 C go, a bias of C comes).
    BERT: embeddings (100 + 64 + 2) * 64 + LayerNorm 2 * 64; per layer Q, K, V, O 4 * (64*64
    + 64), its LayerNorms 2 * 2 * 64, MLP 64*128 + 128 + 128*64 + 64; pooler 64*64 + 64."""
    # MixNet: convs 3*16*9 + 16, 16*16*9 + 16, 16*16 + 16, gate 32*32 + 32, head 32*10 + 10, no
    # BatchNorm; MACs per image: stem 32*32 positions * 16 * 27, after the max pool 16*16
    # positions * 16 * (144 + 16) for the two branches, the gate 32*32 on one position, the Gram
    # matrix 32*32 * 64 (8*8 positions after the average pool), the head 320.
    # GEGLU block: proj 64*64 + 64, LayerNorm 2 * 64, ff_in 64*256 + 256, ff_out 128*64 + 64;
    # MACs: 2 * 7 = 14 tokens through the three projections.
    geglu = record("geglu_source")
    assert geglu["torch_params"] == geglu["params"] == 4_160 + 128 + 16_640 + 8_256 == 29_184
    assert geglu["macs"] == 14 * (64 * 64 + 64 * 256 + 128 * 64)
    # CLIP text: embeddings (100 + 64) * 64; per layer Q, K, V, O 4 * (64*64 + 64), two
    # LayerNorms 2 * 2 * 64, MLP 64*128 + 128 + 128*64 + 64; a final LayerNorm 2 * 64. MACs as
    # BERT's layers (no pooler product: CLIP pools by gathering the end-of-text token).
    clip = record("clip_source")
    layer = 4 * (64 * 64 + 64) + 2 * 2 * 64 + 64 * 128 + 128 + 128 * 64 + 64
    assert clip["torch_params"] == clip["params"] == (100 + 64) * 64 + 2 * layer + 2 * 64
    assert clip["macs"] == 2 * (14 * (4 * 64 * 64 + 2 * 64 * 128) + 2 * 4 * 2 * 7 * 7 * 16)
    mixnet = record("mixnet_source")
    assert mixnet["torch_params"] == mixnet["params"] == 448 + 2320 + 272 + 1056 + 330 == 4_426
    assert mixnet["macs"] == 2 * (32 * 32 * 16 * 27 + 16 * 16 * 16 * (144 + 16) + 32 * 32 + 32 * 32 * 64 + 320)
    cnn = record("cnn_source")
    assert cnn["torch_params"] == 3 * 16 * 9 + 2 * 16 * 16 * 9 + 16 * 32 * 9 + 2 * 80 + 32 * 10 + 10 == 10_138
    assert cnn["params"] == 10_138 - 80
    assert cnn["macs"] == 2 * (32 * 32 * 16 * 27 + 2 * 32 * 32 * 16 * 144 + 16 * 16 * 32 * 144 + 320)
    layer = 4 * (64 * 64 + 64) + 2 * 2 * 64 + 64 * 128 + 128 + 128 * 64 + 64
    bert = record("bert_source")
    assert bert["torch_params"] == bert["params"] == (100 + 64 + 2) * 64 + 2 * 64 + 2 * layer + 64 * 64 + 64
    # At batch 2, 7 tokens: per layer 14 tokens through Q, K, V, O and the MLP, and per
    # sequence and head QK^T and scores x V (7 * 7 * 16 each); the pooler on 2 tokens.
    per_layer = 14 * (4 * 64 * 64 + 2 * 64 * 128) + 2 * 4 * 2 * 7 * 7 * 16
    assert bert["macs"] == 2 * per_layer + 2 * 64 * 64
    # Qwen3: embeddings 100 * 64; per layer Q 64*64, K and V 64*32 (2 key/value heads of 16),
    # O 64*64, no biases, RMS norms (input, post-attention: 64 each; q_norm, k_norm: 16 each),
    # gate, up and down 64*128 each; a final norm of 64. MACs: 14 tokens through the
    # projections and MLP, and per sequence and query head the two attention products.
    qwen3 = record("qwen3_source")
    layer = 64 * 64 + 2 * 64 * 32 + 64 * 64 + 2 * 64 + 2 * 16 + 3 * 64 * 128
    assert qwen3["torch_params"] == qwen3["params"] == 100 * 64 + 2 * layer + 64 == 80_512
    per_layer = 14 * (64 * 64 + 2 * 64 * 32 + 64 * 64 + 3 * 64 * 128) + 2 * 4 * 2 * 7 * 7 * 16
    assert qwen3["macs"] == 2 * per_layer


@pytest.mark.parametrize("name", NAMES)
def test_every_variant_records_its_sources_figures(name):
    source = record(name.split("_")[0] + "_source")
    data = record(name)
    assert (data["torch_params"], data["params"], data["macs"]) == (
        source["torch_params"], source["params"], source["macs"])


@pytest.mark.parametrize("name", NAMES)
def test_every_tensor_shape_is_onnxruntimes(name):
    data = record(name)
    result = analysis(name)
    assert_recorded_shapes(result, data)


@pytest.mark.parametrize("name", NAMES)
def test_every_tensor_dtype_is_onnxruntimes(name):
    data = record(name)
    result = analysis(name)
    problems = [f"{tensor}: archcalc {result.tensors[tensor].dtype if tensor in result.tensors else None}, "
                f"onnxruntime {dtype}" for tensor, dtype in data["dtypes"].items()
                if tensor not in result.tensors or result.tensors[tensor].dtype != dtype]
    assert not problems, f"{len(problems)} of {len(data['dtypes'])} dtypes differ:\n" + "\n".join(problems)


@pytest.mark.parametrize("name", NAMES)
def test_every_op_is_modelled_without_warnings(name):
    result = analysis(name)
    assert [layer.name for layer in result.layers if not layer.modelled] == []
    assert list(result.warnings) == []
    assert not result.totals.partial


@pytest.mark.parametrize("name", NAMES)
def test_params_are_the_sources(name):
    """Fused, quantised (int8, int32 biases, packed int4 by value) or fp16: the source's learned values."""
    data = record(name)
    assert analysis(name).totals.params == data["params"] + NOT_LEARNED.get(data["model"], 0)


@pytest.mark.parametrize("name", NAMES)
def test_macs_are_the_sources(name):
    """Every variant multiplies what its source does: MACs equal, exactly."""
    assert analysis(name).totals.macs == record(name)["macs"]


@pytest.mark.parametrize("name", NAMES)
def test_weight_bytes_are_the_stored_params(name):
    """What the file stores (recorded before stripping) = the params' stored bytes + the
    quantisation scales and zero points + constants that are not learned (the extended-level
    graph keeps the Constant outputs it folded as initializers: int64 shapes, a bool and two
    float scalars in bert_dynamic_extended), each read from the stripped file."""
    model = onnx.load(str(FIXTURES / f"{name}.onnx"), load_external_data=False)
    not_params = sum(stored_bytes(t) for t in model.graph.initializer
                     if QUANTISATION_PARAMS.search(t.name) or t.data_type in (TensorProto.INT64, TensorProto.BOOL)
                     or not t.dims)
    data = record(name)
    stored_constant = NOT_LEARNED.get(data["model"], 0) * (2 if name.endswith("fp16") else 4)  # a Constant node's
    assert analysis(name).totals.weight_bytes == data["initializer_bytes"] - not_params + stored_constant


def test_int4_weight_bytes_by_hand():
    """BERT's int4 graph: 12 MatMul weights (8 of 64x64, 2 of 64x128, 2 of 128x64: 65,536
    values) and the three embedding tables ((100 + 64 + 2) x 64 = 10,624 values) at half a
    byte each; the other 81,856 - 65,536 - 10,624 = 5,696 params (biases, LayerNorms, the
    pooler) stay float32. Its block scales (one float32 per 32 values: 2,048 for the MatMuls,
    332 for the tables) and zero points (uint8 [N, ceil(blocks / 2)] for MatMulNBits: 1,024
    bytes; uint4, one per block, for the tables: 166 bytes) are the rest of the file.
    The int4 QDQ graph packs only the MatMuls: 65,536 / 2 + 4 * 16,320."""
    int4 = analysis("bert_int4").totals
    assert int4.params == 81_856
    assert int4.weight_bytes == 65_536 // 2 + 10_624 // 2 + 4 * 5_696 == 60_864
    assert record("bert_int4")["initializer_bytes"] - int4.weight_bytes == 4 * (2_048 + 332) + 1_024 + 166
    assert analysis("bert_int4_qdq").totals.weight_bytes == 65_536 // 2 + 4 * (81_856 - 65_536)


# Dynamic quantization multiplies each MatMulInteger's int32 product by a_scale * w_scale in a
# plain Mul: the weight's float32 scale (4 bytes each) is read by no quantised op, so it is
# among the other constants, not the scales and zero points.
SCALES_READ_BY_MUL = {"bert_dynamic": 4 * 13, "bert_optimized_dynamic": 4 * 7, "distilbert_optimized_dynamic": 4 * 6}


@pytest.mark.parametrize("name", NAMES)
def test_scales_and_zero_points_are_their_own_bytes(name):
    """The quantisation scales and zero points the quantised ops read (by their schema
    positions), each once, are the initializers onnxruntime's quantizers name as such."""
    model = onnx.load(str(FIXTURES / f"{name}.onnx"), load_external_data=False)
    named = sum(stored_bytes(t) for t in model.graph.initializer if QUANTISATION_PARAMS.search(t.name))
    totals = analysis(name).totals
    assert totals.quantization_bytes == named - SCALES_READ_BY_MUL.get(name, 0)
    assert totals.to_json()["quantization_bytes"] == totals.quantization_bytes


def test_scale_and_zero_point_bytes_by_hand():
    """The file's initializers = weight bytes + scales and zero points + other constants.
    bert_int4: as test_int4_weight_bytes_by_hand, block scales 4 * (2,048 + 332) and zero
    points 1,024 + 166; nothing else. cnn_qdq: 8 activations quantised per tensor (x, the
    stem's, the block's three, the strided conv's, the pool's, the logits: a float32 scale
    and a uint8 zero point, 5 bytes each), 5 weights per tensor (float32 scale, int8 zero
    point: 5 each) and 5 int32 biases (a float32 scale of 1 and an int32 zero point: 8 each);
    nothing else."""
    int4 = analysis("bert_int4").totals
    assert int4.quantization_bytes == 4 * (2_048 + 332) + 1_024 + 166
    assert record("bert_int4")["initializer_bytes"] == int4.weight_bytes + int4.quantization_bytes
    qdq = analysis("cnn_qdq").totals
    assert qdq.quantization_bytes == 8 * 5 + 5 * 5 + 5 * 8 == 105
    assert record("cnn_qdq")["initializer_bytes"] == qdq.weight_bytes + qdq.quantization_bytes
    from archcalc.report.analysis import totals_lines

    assert dict(totals_lines(analysis("cnn_qdq")))["  Scales, zero points"] == "105 B, not in weight memory"
    assert "  Scales, zero points" not in dict(totals_lines(analysis("cnn_source")))


@pytest.mark.parametrize("fp16, fp32", [("bert_fp16", "bert_optimized"), ("gpt2_fp16", "gpt2_optimized"),
                                        ("vit_fp16", "vit_optimized"), ("qwen3_fp16", "qwen3_optimized"),
                                        ("cnn_fp16_io", "cnn_source")])
def test_fp16_halves_the_weight_bytes(fp16, fp32):
    assert 2 * analysis(fp16).totals.weight_bytes == analysis(fp32).totals.weight_bytes


def test_fp16_inputs_and_outputs_are_float16():
    data = record("cnn_fp16_io")
    assert data["dtypes"]["x"] == data["dtypes"]["logits"] == "float16"
    assert {analysis("cnn_fp16_io").tensors[name].dtype for name in ("x", "logits")} == {"float16"}


@pytest.mark.parametrize("name", NAMES)
def test_verify_passes(name):
    """onnxruntime runs each graph (com.microsoft ops on CPU) with weights verify fills in:
    every tensor checked matches, none skipped, no warning (int4 weights, ml_dtypes' kind
    "V", get zeros: random floats cast to uint4 warned)."""
    import warnings

    from archcalc.runtime.verify import verify

    data = record(name)
    if any(op.startswith(NCHWC) for op in data["ops"]) and missing_nchwc_kernels():
        pytest.skip(missing_nchwc_kernels())
    if data.get("recorded_from", name) != name:
        pytest.skip(f"onnxruntime has no CPU kernel for an op of {name} (recorded from {data['recorded_from']})")
    graph = load_onnx(str(FIXTURES / f"{name}.onnx"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = verify(graph, analyze(graph, record(name)["dims"]))
    assert report.mismatches == [] and report.skipped == []
    assert report.tensors_checked == len(data["shapes"]) - len(data["input"])  # every node output


# Integer MACs by hand, the rest float. BERT (and DistilBERT) quantised: the 12 weight
# products (per layer 14 tokens * (4 * 64*64 + 2 * 64*128)) run in int8 (MatMulInteger,
# DynamicQuantizeMatMul, MatMulIntegerToFloat, QAttention's projection), BERT's pooler
# (2 * 64*64) too; the attention products stay float (per layer 2 products * 2 sequences *
# 4 heads * 7*7 * 16). The QOperator CNNs multiply only in QLinearConv, QLinearMatMul and
# QGemm: every MAC integer. QDQ, int4 (MatMulNBits dequantises its weights to float) and float
# graphs: none.
BERT_INTEGER = 2 * 14 * (4 * 64 * 64 + 2 * 64 * 128)
ATTENTION_FLOAT = 2 * 2 * 2 * 4 * 7 * 7 * 16
INTEGER_MACS = {"bert_dynamic": BERT_INTEGER + 2 * 64 * 64, "bert_dynamic_extended": BERT_INTEGER + 2 * 64 * 64,
                "bert_optimized_dynamic": BERT_INTEGER + 2 * 64 * 64, "distilbert_optimized_dynamic": BERT_INTEGER,
                "cnn_qoperator": record("cnn_source")["macs"], "cnn_qoperator_all": record("cnn_source")["macs"],
                "mixnet_qoperator": record("mixnet_source")["macs"],
                "mixnet_qoperator_all": record("mixnet_source")["macs"]}


@pytest.mark.parametrize("name", NAMES)
def test_integer_macs_are_apart_from_float_ones(name):
    totals = analysis(name).totals
    assert totals.integer_macs == INTEGER_MACS.get(name, 0)
    if name.startswith("bert") and name in INTEGER_MACS:
        assert totals.macs - totals.integer_macs == ATTENTION_FLOAT
    assert totals.to_json()["integer_macs"] == totals.integer_macs


def test_the_table_splits_mixed_macs():
    from archcalc.report.analysis import totals_lines

    lines = dict(totals_lines(analysis("bert_dynamic")))
    assert lines["  Integer"].startswith(f"{BERT_INTEGER + 2 * 64 * 64:,}")
    assert lines["  Float"].startswith(f"{ATTENTION_FLOAT:,}")
    assert "  Integer" not in dict(totals_lines(analysis("cnn_source")))


def test_the_readmes_table_is_what_the_fixtures_give(capsys):
    """README's table of the deployed fixtures is deployed_table.py's output, row for row:
    rerun the script and paste its output after a fixture or a count changes."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("deployed_table", FIXTURES / "deployed_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main()
    printed = capsys.readouterr().out.strip().splitlines()
    readme = (Path(__file__).parents[2] / "README.md").read_text().splitlines()
    start = readme.index(printed[0])
    assert readme[start:start + len(printed)] == printed
    assert all("= source" in row.split("|")[6] for row in printed[2:])  # every MAC count is the source's
