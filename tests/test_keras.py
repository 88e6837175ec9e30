"""Keras models through the Python API and the CLI (tf2onnx), against Keras' and TensorFlow's own figures.

The references: params against Keras' ``count_params()`` (archcalc's params plus buffers: Keras
counts BatchNorm's moving statistics as non-trainable params, archcalc as buffers), trainable
and non-trainable against the sums of ``trainable_weights`` and ``non_trainable_weights``, the
Keras Applications table's figure for MobileNetV2 (3,538,984), MACs by hand for a small model
and against TensorFlow's own FLOPs statistics (two per multiply-add) of every Conv2D,
DepthwiseConv2dNative and MatMul op of the model's frozen graph. TensorFlow is an optional
extra: without it these tests skip, except in CI (CI=true), where .ci/run installs it and a
missing TensorFlow is a failure.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import os

import pytest
from click.testing import CliRunner

import archcalc
from archcalc.cli.main import cli


def _need(module: str):
    if os.environ.get("CI") == "true":
        return importlib.import_module(module)  # CI installs the extras: missing is a failure
    return pytest.importorskip(module)


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
if importlib.util.find_spec("triton") is not None:
    # torch's exporter imports Triton, whose LLVM clashes with TensorFlow's when TensorFlow is
    # loaded first (a segfault, with tensorflow-cpu 2.21 and triton 3.8); loaded first, Triton does not
    # crash, so the whole suite runs in one process
    import triton  # noqa: F401
tf = _need("tensorflow")
_need("tf2onnx")
import keras  # noqa: E402  (with TensorFlow: only once it is known to be there)
import keras_models as km  # noqa: E402
import numpy as np  # noqa: E402


def tensorflow_macs(model, shape: tuple[int, ...]) -> int:
    """TensorFlow's FLOPs statistics of the convolutions and matrix products of the model's
    traced, frozen graph (static shapes), halved."""
    from tensorflow.python.framework import ops
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    function = tf.function(lambda x: model(x, training=False)).get_concrete_function(tf.TensorSpec(shape))
    graph = convert_variables_to_constants_v2(function).graph
    flops = sum(ops.get_stats_for_node_def(graph, op.node_def, "flops").value for op in graph.get_operations()
                if op.type in ("Conv2D", "DepthwiseConv2dNative", "MatMul"))
    assert flops % 2 == 0
    return flops // 2


def keras_counts(model) -> tuple[int, int]:
    """(trainable, non-trainable) values, as model.summary() prints them."""
    return (sum(math.prod(v.shape) for v in model.trainable_weights),
            sum(math.prod(v.shape) for v in model.non_trainable_weights))


def test_small_model_params_macs_and_layer_names():
    model = km.small_cnn()
    before = [w.copy() for w in model.get_weights()]
    analysis = archcalc.analyze(model)
    # Learned: stem 3*3*3*8 = 216, stem_bn gamma+beta 16, dw 3*3*8 = 72, dw_bn 16, pw 8*8 + 8 = 72,
    # head 8*10 + 10 = 90. Buffers: the two BatchNorms' moving mean and variance, 2*8 each.
    assert analysis.totals.params == 216 + 16 + 72 + 16 + 72 + 90 == 482
    assert analysis.totals.buffers == 32
    assert analysis.totals.params + analysis.totals.buffers == model.count_params() == 514
    assert (analysis.totals.trainable_params, analysis.totals.non_trainable_params) == keras_counts(model)
    # MACs on 16x16 ('same' padding): stem 256*8*27, dw 256*8*9, pw 256*8*8, head 8*10
    assert analysis.totals.macs == 55296 + 18432 + 16384 + 80 == 90192
    assert analysis.totals.macs == tensorflow_macs(model, (1, 16, 16, 3))
    # the fresh model's zero bias is kept (tf2onnx would drop an Add of zeros): pw adds it per output
    pw = analysis.layer("pw")
    assert pw.params == 72 and pw.flops == 2 * 16384 + 256 * 8
    # BatchNorms are BatchNorms, the folded one (stem_bn) and the kept one (dw_bn), and the
    # bias-free stem has no bias (the folded shift made one)
    assert analysis.layer("stem_bn").op == analysis.layer("dw_bn").op == "BatchNormalization"
    assert [t.name for t in analysis.layer("stem/Conv").inputs][1:] == ["stem/kernel"]
    # --depth 1: one row per Keras layer, as model.summary() lists them
    frame = analysis.to_dataframe(depth=1)
    assert list(frame.index) == [layer.name for layer in model.layers[1:]]
    assert frame.loc["head", "params"] == 90 and frame.loc["stem", "macs"] == 55296
    assert analysis.name == f"small_cnn (keras {keras.__version__}, tf2onnx {_need('tf2onnx').__version__})"
    # the model keeps its own values (the conversion ran on perturbed ones)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_attention_counted():
    model = km.attention()
    analysis = archcalc.analyze(model)
    # MultiHeadAttention(2 heads, key_dim 8) on 16 features: query, key and value kernels 16*2*8
    # and biases 2*8 each, output 2*8*16 + 16; head 16*10 + 10
    assert analysis.totals.params == 3 * (256 + 16) + 256 + 16 + 170 == model.count_params() == 1258
    # 7 tokens: projections 3 * 7*16*16, scores and context 2 heads * 7*7*8 each, output 7*16*16, head 16*10
    assert analysis.totals.macs == 3 * 1792 + 784 + 784 + 1792 + 160 == 8896
    assert not analysis.totals.partial and not analysis.warnings


@pytest.mark.parametrize("build", [km.Subclassed, km.sequential])
def test_models_without_known_inputs_are_built_at_the_size_given(build):
    model = build()
    with pytest.raises(archcalc.ArchcalcError, match="does not say the shape of its inputs"):
        archcalc.analyze(model)
    analysis = archcalc.analyze(model, input_size=(1, 8, 8, 3))
    # conv 3x3, 3 -> 4 channels, no padding: 6x6 outputs, 4*27 + 4 params, 36*4*27 MACs
    if isinstance(model, km.Subclassed):  # BatchNorm 2*4 learned, 2*4 buffers; dense 4*3 + 3
        assert (analysis.totals.params, analysis.totals.buffers) == (112 + 8 + 15, 8)
        assert analysis.totals.macs == 3888 + 12
    else:  # flattened 6*6*4 = 144 features, dense 144*2 + 2
        assert (analysis.totals.params, analysis.totals.buffers) == (112 + 290, 0)
        assert analysis.totals.macs == 3888 + 288
    assert analysis.totals.params + analysis.totals.buffers == model.count_params()


def test_batchnorm_without_scale_or_shift_counts_what_it_learns():
    model = km.batchnorms_without_scale_or_shift()
    analysis = archcalc.analyze(model)
    # conv 4*27 = 108, bn beta 4, dw 4*9 = 36, bn2 gamma 4: Keras' trainable weights
    assert analysis.totals.params == analysis.totals.trainable_params == 108 + 4 + 36 + 4 == keras_counts(model)[0]
    # moving statistics 2*4 each; the unit gamma and zero beta the two nodes take are neither
    assert analysis.totals.buffers == 16
    assert analysis.totals.params + analysis.totals.buffers == model.count_params() == 168
    assert not analysis.warnings


def test_numbered_layer_names_are_read_back_per_layer():
    model = km.numbered_names()
    analysis = archcalc.analyze(model)
    frame = analysis.to_dataframe(depth=1)
    assert list(frame.index) == [layer.name for layer in model.layers[1:]]
    for layer in model.layers[1:]:  # conv 4*3*3*cin, no bias; BatchNorm beta 4 (no gamma)
        assert frame.loc[layer.name, "params"] == sum(math.prod(w.shape) for w in layer.trainable_weights)


def test_batch_is_symbolic_and_input_shapes_name_dims():
    model = km.small_cnn()
    assert archcalc.analyze(model, batch=4).totals.macs == 4 * 90192
    named = archcalc.analyze(model, input_shapes={"image": ("n", 16, 16, 3)}, dims={"n": 2})
    assert named.totals.macs == 2 * 90192
    assert str(named.layer("stem/Conv").inputs[0].shape[0]) == "n"
    fixed = archcalc.analyze(model, input_size=(3, 16, 16, 3))
    assert fixed.totals.macs == 3 * 90192


def test_frozen_backbone_trains_only_the_head():
    model = km.transfer()
    analysis = archcalc.analyze(model, training=True)
    trainable, non_trainable = keras_counts(model)
    # head: 1280*5 + 5
    assert analysis.totals.trainable_params == trainable == 6405
    # frozen: MobileNetV2's learned values; non-trainable in Keras: those and the moving statistics
    assert analysis.totals.frozen_params + analysis.totals.buffers == non_trainable
    assert analysis.totals.buffers == 34112  # 2 per channel of its 52 BatchNorms (the top's 1280 of it)
    assert analysis.totals.params + analysis.totals.buffers == model.count_params()
    # backward stops at the head: its weight gradient only, 1280*5
    assert analysis.training.totals.backward_macs == 6400
    # nested: the backbone's layers are named within it, and fold into one row at depth 1
    assert analysis.layer("mobilenetv2_1.00_32/Conv1/Conv") is not None
    assert list(analysis.to_dataframe(depth=1).index) == ["mobilenetv2_1.00_32", "pool", "head"]
    assert analysis.totals.macs == tensorflow_macs(model, (1, 32, 32, 3))


def test_cli_keras_application_published_params():
    """keras.applications:MobileNetV2 (called with weights=None: nothing is downloaded) at its
    own input shape. Keras Applications' table of models (keras.io/applications; the current
    page rounds it to 3.5M, earlier ones print 3,538,984) and TensorFlow's MobileNetV2 docs
    (mobilenet_v2_1.0_224: 300 M multiply-adds)."""
    result = CliRunner().invoke(cli, ["analyze", "keras.applications:MobileNetV2", "--format", "json"])
    assert result.exit_code == 0, result.output
    totals = json.loads(result.output)["totals"]
    assert totals["params"] + totals["buffers"] == 3_538_984
    assert (totals["trainable_params"], totals["non_trainable_params"]) == (3_504_872, 34_112)
    model = keras.applications.MobileNetV2(weights=None)
    assert totals["macs"] == tensorflow_macs(model, (1, 224, 224, 3)) == 300_774_272


def test_a_model_tf2onnx_cannot_convert_names_model_converter_and_fix():
    with pytest.raises(archcalc.ArchcalcError) as caught:
        archcalc.analyze(km.exact_gelu())
    text = str(caught.value)
    assert "Keras model exact_gelu could not be converted to ONNX by tf2onnx" in text
    assert "Erfc" in text and "\n  fix: " in text and "gelu(approximate=True)" in text
    result = CliRunner().invoke(cli, ["analyze", "tests.keras_models:exact_gelu"])
    assert result.exit_code == 2, result.output
    assert "could not be converted to ONNX by tf2onnx" in result.output and "Traceback" not in result.output


def test_bad_keras_inputs_are_typed_errors():
    model = km.small_cnn()
    with pytest.raises(archcalc.ArchcalcError, match="dim 1 is 16, not 32"):
        archcalc.analyze(model, input_size=(1, 32, 32, 3))
    with pytest.raises(archcalc.ArchcalcError, match="has 4 dims .* not 3"):
        archcalc.analyze(model, input_size=(1, 16, 16))
    with pytest.raises(archcalc.ArchcalcError, match="exporter are for PyTorch modules"):
        archcalc.analyze(model, exporter="dynamo")
    a, b = keras.Input((4,), name="a"), keras.Input((4,), name="b")
    pair = keras.Model([a, b], keras.layers.Add(name="sum")([a, b]), name="pair")
    with pytest.raises(archcalc.ArchcalcError, match="pair has no input named 'c'.*\n  fix: name the inputs as the "
                                                     "model does: a, b"):
        archcalc.analyze(pair, input_shapes={"c": (1, 4)})
    result = CliRunner().invoke(cli, ["analyze", "tests.keras_models:small_cnn", "--input-shape", "image=1,3,16,16"])
    assert result.exit_code == 2 and "dim 1 is 16, not 3" in result.output and "Traceback" not in result.output


def test_verify_runs_the_converted_model_in_onnxruntime():
    """The restored BatchNorms and convolutions make a valid graph that onnxruntime runs."""
    report = archcalc.verify(km.small_cnn(), batch=2)
    assert isinstance(report, archcalc.VerifyReport)
    assert report.ok and report.tensors_checked > 0
