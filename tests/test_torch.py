"""PyTorch modules through the Python API and the CLI, against torch's own figures.

The references are torch's, computed here: params against sum(p.numel() for p in
model.parameters()) (a tied parameter listed once), MACs against FlopCounterMode's FLOPs / 2
with attention computed eagerly (the math SDPA backend; FlopCounterMode does not see the
fused CPU kernel), and the small models' figures by hand as well. torch is an optional
extra: without it these tests skip, except in CI (CI=true), where .ci/run installs it and
a missing torch is a failure.
"""

from __future__ import annotations

import importlib
import json
import os
import warnings

import pytest
from click.testing import CliRunner

import archcalc
from archcalc.cli.main import cli


def _need(module: str):
    if os.environ.get("CI") == "true":
        return importlib.import_module(module)  # CI installs the extras: missing is a failure
    return pytest.importorskip(module)


torch = _need("torch")
_need("onnxscript")
import torch_models as tm  # noqa: E402  (imports torch: only once it is known to be there)
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402


def numel(model) -> int:
    return sum(p.numel() for p in model.parameters())


def flop_counter_macs(model, inputs: tuple) -> int:
    """FlopCounterMode's FLOPs / 2 with attention computed eagerly: the math SDPA backend, and
    nn.MultiheadAttention's fused inference path off (FlopCounterMode sees neither fused
    kernel: with it on, ViT-B/16 shows 11.3 G instead of 17.6 G)."""
    counter = FlopCounterMode(display=False)
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model(*inputs)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return counter.get_total_flops() // 2


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_small_cnn_params_macs_and_module_names(exporter):
    model = tm.SmallCNN()
    analysis = archcalc.analyze(model, input_size=(1, 3, 16, 16), exporter=exporter)
    # Params: stem conv 8*3*3*3 = 216, block conv1 8*8*3*3 = 576, conv2 8*8 = 64, fc 8*10 + 10 = 90,
    # three BatchNorms 2*8 each = 48 (kept: both exporters fold them into the conv unless told not to)
    assert analysis.totals.params == 216 + 576 + 64 + 90 + 48 == 994 == numel(model)
    assert analysis.totals.buffers == 3 * 2 * 8  # running mean and variance
    # MACs on 16x16 (padding keeps the size): stem 256*8*27, conv1 256*8*72, conv2 256*8*8, fc 8*10
    assert analysis.totals.macs == 55296 + 147456 + 16384 + 80 == 219216
    assert analysis.totals.macs == flop_counter_macs(model, (torch.zeros(1, 3, 16, 16),))
    names = {layer.name for layer in analysis.layers}
    assert {"stem.0", "stem.1", "block.conv1", "block.bn1", "block.conv2", "block.bn2", "fc"} <= names
    assert analysis.layer("block.conv1").block == "block"
    # bias=False: no bias input (the dynamo exporter adds an all-zero one, taken out again), so
    # the conv's FLOPs are 2 x MACs with no bias add
    stem = analysis.layer("stem.0")
    assert [t.name for t in stem.inputs] == ["x", "stem.0.weight"] and stem.flops == 2 * 55296
    assert analysis.name == f"SmallCNN (torch {torch.__version__.split('+')[0]}, {exporter} exporter)"
    # --depth 1 folds by module: stem, block, then the pool and head
    folded = analysis.to_dataframe(depth=1)
    assert folded.loc["block", "params"] == 576 + 16 + 64 + 16
    assert model.training  # the module is put back in the mode it came in


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_group_norm_counts_only_the_modules_parameters(exporter):
    # Both exporters write GroupNorm(4, 16) as an InstanceNormalization over 4 groups with a unit
    # scale and zero bias they make up (4 + 4 values), then the module's own affine Mul and Add.
    # Only the module's 16 + 16 are params.
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.GroupNorm(4, 16), torch.nn.ReLU())
    analysis = archcalc.analyze(model, input_size=(1, 3, 8, 8), exporter=exporter)
    assert analysis.totals.params == 16 * 27 + 16 + 16 + 16 == 480 == numel(model)


def test_frozen_backbone_trains_only_the_head():
    model = tm.TransferModel()
    analysis = archcalc.analyze(model, input_size=(1, 3, 32, 32), training=True)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    # features: conv 3->16 (16*27 + 16 = 448) and 16->32 (32*144 + 32 = 4640), frozen
    assert analysis.totals.frozen_params == 448 + 4640 == frozen
    # classifier: 2048*64 + 64 = 131136 and 64*5 + 5 = 325, trainable
    assert analysis.totals.trainable_params == 131136 + 325 == numel(model) - frozen
    step = analysis.training
    by_layer = {layer.name: layer for layer in step.layers}
    # Nothing before the head needs a gradient: backward stops there. fc1 computes only its
    # weight gradient (2048*64 MACs), fc2 its weight's (64*5) and its input's (5*64).
    assert all(by_layer[name].backward_macs == 0 for name in by_layer if name.startswith("features"))
    assert step.totals.backward_macs == 131072 + 320 + 320


def test_tied_weights_counted_once_and_attention_counted():
    model = tm.TiedLM()
    tokens = torch.tensor([[1, 2, 3, 4, 5, 6]])
    analysis = archcalc.analyze(model, tokens)
    # embed 50*16 = 800 (the head's weight is the same tensor), attention in_proj 3*16*16 + 48 and
    # out_proj 16*16 + 16
    assert analysis.totals.params == 800 + 816 + 272 == numel(model) == 1888
    # 6 tokens: in_proj 6*16*48, Q K^T 2 heads * 6*6*8, attention x V the same, out_proj 6*16*16,
    # head 6*16*50
    assert analysis.totals.macs == 4608 + 576 + 576 + 1536 + 4800 == flop_counter_macs(model, (tokens,))


def test_input_shapes_by_forward_argument_and_batch():
    one = archcalc.analyze(tm.SmallCNN(), input_shapes={"x": ("batch", 3, 16, 16)}, batch=2)
    assert one.totals.macs == 2 * 219216
    assert one.layer("stem.0").inputs[0].shape == (2, 3, 16, 16)


def test_a_module_that_cannot_be_exported_names_module_exporters_and_fix():
    with pytest.raises(archcalc.ArchcalcError) as caught:
        archcalc.analyze(tm.Unexportable(), input_size=(1, 4))
    text = str(caught.value)
    assert "module Unexportable could not be exported to ONNX" in text
    assert "dynamo exporter failed:" in text and "torchscript exporter failed:" in text
    assert "\n  fix: check the example inputs" in text and "Traceback" not in text


def test_bad_torch_inputs_are_typed_errors():
    model = tm.SmallCNN()
    with pytest.raises(archcalc.ArchcalcError, match="no description of the inputs"):
        archcalc.analyze(model)
    with pytest.raises(archcalc.ArchcalcError, match="forward\\(\\) of SmallCNN has no argument 'image'"):
        archcalc.analyze(model, input_shapes={"image": (1, 3, 16, 16)})
    with pytest.raises(archcalc.ArchcalcError, match="exported at fixed sizes"):
        archcalc.analyze(model, input_shapes={"x": ("n", 3, 16, 16)})
    with pytest.raises(archcalc.ArchcalcError, match="unknown exporter 'onnx'"):
        archcalc.analyze(model, input_size=(1, 3, 16, 16), exporter="onnx")


def test_verify_runs_the_exported_module_in_onnxruntime():
    report = archcalc.verify(tm.SmallCNN(), input_size=(1, 3, 16, 16))
    assert isinstance(report, archcalc.VerifyReport)
    assert report.ok and report.tensors_checked > 0


def test_cli_analyzes_a_module_factory():
    runner = CliRunner()
    result = runner.invoke(cli, ["analyze", "tests.torch_models:small_cnn", "--input-shape", "x=1,3,16,16",
                                 "--format", "json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["totals"]["params"] == 994 and document["totals"]["macs"] == 219216
    assert [layer["name"] for layer in document["layers"]][:2] == ["stem.0", "stem.1"]


@pytest.mark.parametrize(("argv", "message"), [
    (["tests.torch_models:small_cnn"], "needs the size of its inputs"),
    (["tests.torch_models:nothing_here", "--input-shape", "x=1,3,16,16"], "has no attribute 'nothing_here'"),
    (["tests.torch_models:not_a_module", "--input-shape", "x=1,3,16,16"], "returned a str, not a torch.nn.Module"),
    (["no_such_package_here:build", "--input-shape", "x=1,3,16,16"], "neither a file nor an importable"),
    (["tests.torch_models:small_cnn", "--input-shape", "x=batch,3,16,16"], "exported at fixed sizes"),
])
def test_cli_factory_errors_exit_2_with_a_message(argv, message):
    result = CliRunner().invoke(cli, ["analyze", *argv])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


# -- the anchors' own models ----------------------------------------------------------------
# torchvision's and Hugging Face's models, built with random weights (nothing downloaded).
# Each export takes seconds (swin_t the most, ~20 s): these are the slow tests of this file.

TORCHVISION = ["resnet18", "mobilenet_v3_large", "efficientnet_b0", "convnext_tiny", "vit_b_16",
               "swin_t"]


def _against_torch(model, inputs: tuple):
    model.eval()
    analysis = archcalc.analyze(model, inputs)
    assert analysis.totals.params == numel(model)
    reference = flop_counter_macs(model, inputs)
    assert abs(analysis.totals.macs - reference) <= reference // 100, (analysis.totals.macs, reference)
    assert not analysis.totals.partial, [layer.name for layer in analysis.layers if not layer.modelled]
    return analysis


@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_model_matches_numel_and_flop_counter(name):
    models = _need("torchvision.models")
    _against_torch(getattr(models, name)(), (torch.randn(1, 3, 224, 224),))


def test_torchvision_resnet50_published_figures():
    """torchvision's model card: 25,557,032 params, 4.09 GFLOPS (its FLOPS are MACs); and torch's
    own figures, as for the models above."""
    models = _need("torchvision.models")
    analysis = _against_torch(models.resnet50(), (torch.randn(1, 3, 224, 224),))
    assert analysis.totals.params == 25_557_032
    assert round(analysis.totals.macs / 1e9, 2) == 4.09
    frame = analysis.to_dataframe()
    assert len(frame) == len(analysis.layers)
    for column in ("params", "macs", "flops", "activation_bytes"):
        assert frame[column].sum() == getattr(analysis.totals, column), column
    html = analysis._repr_html_()
    assert "25,557,032" in html and "layer1.0.conv1" in html


def _hugging_face(kind: str):
    transformers = _need("transformers")
    # Small configs (two layers): the counting is the same per layer, and the export quick.
    common = dict(attn_implementation="eager", use_cache=False)
    if kind == "bert":
        config = transformers.BertConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                                         intermediate_size=512, **common)
        return transformers.BertModel(config)
    config = transformers.GPT2Config(n_embd=128, n_layer=2, n_head=4, **common)
    return transformers.GPT2LMHeadModel(config)  # lm_head.weight is wte.weight: counted once


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_hugging_face_model_matches_numel_and_flop_counter(kind):
    _against_torch(_hugging_face(kind), (torch.ones(1, 32, dtype=torch.long),))
