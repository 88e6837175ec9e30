"""Real exported graphs, weights stripped, each with every tensor shape onnxruntime
produced recorded beside it: PyTorch models exported by torch.onnx (TorchScript and dynamo
exporters, optimised and raw; tests/fixtures/onnx/make_fixtures.py) and Keras models
converted by tf2onnx (make_keras_fixtures.py). The generators run by hand, with torch or
TensorFlow; never by the tests, which need neither framework nor onnxruntime.

For each fixture archcalc must infer exactly the recorded shape of every graph input and
node output, count the framework's parameters (after the exporter's BatchNorm folding,
where it folds), count the MACs counted in the framework, and warn about nothing.

These fixtures found eight bugs, now fixed and pinned here: Reshape dropping the values of
exported shape arithmetic (and stopping on an unknown target), embedding tables, sliced
position tables, class tokens and transposed Linear weights not counted as params, a
scalar attention scale counted as one, Max of shape vectors (tf2onnx's broadcast shapes)
losing their values, and a weight read only by Shape (tf2onnx keeps a copy of each
attention kernel for that) counted as params.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto
from onnx_models import assert_recorded_shapes, dtype_mismatches, onnx_inferred_dtypes

from archcalc.core.results import Analysis
from archcalc.engine.inference import analyze
from archcalc.readers.onnx import load_onnx

FIXTURES = Path(__file__).parents[1] / "fixtures" / "onnx"
NAMES = sorted(path.stem for path in FIXTURES.glob("*.onnx"))
KERAS_NAMES = [name for name in NAMES if name.endswith("_tf2onnx")]
TORCH_NAMES = [name for name in NAMES if name not in KERAS_NAMES]
MODELS = ("resnet18", "mobilenet_v2", "squeezenet1_1", "vgg_small", "vit_small", "transformer_encoder",
          "densenet121", "googlenet", "efficientnet_b0", "shufflenet_v2_x1_0", "convnext_tiny", "swin_t", "vit_b_16")
KERAS_MODELS = ("keras_mobilenet_v2", "keras_resnet50", "keras_efficientnet_b0", "keras_inception_v3",
                "keras_densenet121", "keras_xception", "keras_encoder", "keras_text_lstm")
CHECKS = ("shapes", "params", "macs", "warnings")

# torchvision's published parameter counts and GFLOPS (MACs at 224x224, batch 1).
TORCHVISION = {"resnet18": (11_689_512, 1.814), "mobilenet_v2": (3_504_872, 0.301),
               "squeezenet1_1": (1_235_496, 0.349), "densenet121": (7_978_856, 2.834),
               "googlenet": (6_624_904, 1.498), "efficientnet_b0": (5_288_548, 0.386),
               "shufflenet_v2_x1_0": (2_278_604, 0.145), "convnext_tiny": (28_589_128, 4.456),
               "swin_t": (28_288_354, 4.491), "vit_b_16": (86_567_656, 17.564)}

# ---------------------------------------------------------------------------------------


def record(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def analysis(name: str, dims: dict[str, int] | None = None) -> Analysis:
    """archcalc's analysis of a fixture, its dims bound to the recorded run's."""
    return analyze(load_onnx(str(FIXTURES / f"{name}.onnx")), dims or record(name)["dims"])


def test_every_model_and_exporter_is_there():
    stems = {(model, name[len(model) + 1:]) for name in TORCH_NAMES for model in MODELS
             if name.startswith(model + "_")}
    assert {model for model, _ in stems} == set(MODELS)
    for model in MODELS:
        assert {(model, "torchscript"), (model, "dynamo")} <= stems
    assert len(TORCH_NAMES) == len(stems)
    assert sorted(f"{model}_tf2onnx" for model in KERAS_MODELS) == KERAS_NAMES


@pytest.mark.parametrize("name", NAMES)
def test_fixture_is_small_stripped_and_fully_recorded(name):
    path = FIXTURES / f"{name}.onnx"
    assert path.stat().st_size < 1.5 * 1024 * 1024  # Swin-T from TorchScript: 6,194 nodes of shape arithmetic
    model = onnx.load(str(path), load_external_data=False)
    floats = [t for t in model.graph.initializer if t.data_type == TensorProto.FLOAT]
    big = [t for t in floats if math.prod(t.dims) > 16]
    assert big and all(t.data_location == TensorProto.EXTERNAL and not t.raw_data for t in big)
    locations = {e.value for t in big for e in t.external_data if e.key == "location"}
    assert locations == {f"{name}.weights.bin"} and not (FIXTURES / f"{name}.weights.bin").exists()
    data = record(name)
    assert data["nodes"] == len(model.graph.node)
    produced = {out for node in model.graph.node for out in node.output if out}
    assert produced | set(data["input"]) == set(data["shapes"])
    if name in KERAS_NAMES:  # tf2onnx names each dynamic axis unk__<n>: the batch, and a sequence
        assert all(dim.startswith("unk__") for dim in data["dims"])
        assert len(data["dims"]) == (2 if name in ("keras_encoder_tf2onnx", "keras_text_lstm_tf2onnx") else 1)
    else:  # TorchScript bakes the traced length into MultiheadAttention: its 'seq' axis is static.
        dynamic_seq = name.startswith("transformer_encoder_dynamo")
        assert set(data["dims"]) == ({"batch", "seq"} if dynamic_seq else {"batch"})


def test_fixtures_total_under_5_mib():
    assert sum((FIXTURES / f"{name}.onnx").stat().st_size for name in NAMES) < 5 * 1024 * 1024


@pytest.mark.parametrize("name", NAMES)
def test_every_tensor_shape_is_onnxruntimes(name):
    data = record(name)
    result = analysis(name)
    assert_recorded_shapes(result, data)


@pytest.mark.parametrize("name", NAMES)
def test_every_tensor_dtype_is_onnxs(name):
    """dtypes against onnx's own type inference (the recorded runs kept shapes only)."""
    model = onnx.load(str(FIXTURES / f"{name}.onnx"), load_external_data=False)
    reference = onnx_inferred_dtypes(model)
    assert len(reference) >= len(model.graph.node)  # onnx typed (nearly) every tensor
    problems = dtype_mismatches(analysis(name), reference)
    assert not problems, f"{len(problems)} of {len(reference)} dtypes differ:\n" + "\n".join(problems)


# Values the exporters stored as initializers feeding arithmetic, which an ONNX file cannot
# tell from learned ones without reading them. Swin-T: both exporters fold each block's
# relative_position_bias_table[relative_position_index] (169 x heads learned values) into
# the gathered 2401 x heads bias, over 138 heads in all; the dynamo exporter also folds the
# zero canvases of the shifted-window masks (56x56, 28x28, 14x14). Keras' EfficientNetB0:
# its input Normalization layer's mean and variance (3 each), statistics Keras does not
# train, become the operands of an Add (-mean) and a Mul (1 / sqrt(variance)). Keras'
# LSTM has one bias of 4 x 48 where ONNX's LSTM takes two: tf2onnx writes zeros for the
# recurrent one.
EXPORTER_STORED = {"swin_t_torchscript": (2401 - 169) * 138,
                   "swin_t_dynamo": (2401 - 169) * 138 + 56 * 56 + 28 * 28 + 14 * 14,
                   "keras_efficientnet_b0_tf2onnx": 2 * 3,
                   "keras_text_lstm_tf2onnx": 4 * 48}


@pytest.mark.parametrize("name", NAMES)
def test_params_are_the_frameworks(name):
    data = record(name)
    framework = data.get("torch_params", data.get("keras_params"))
    assert analysis(name).totals.params == data["params"] + EXPORTER_STORED.get(name, 0), (
        f"framework {framework:,}, BatchNorm folded: {data['batchnorm_folded']}")


@pytest.mark.parametrize("name", NAMES)
def test_macs_are_the_frameworks(name):
    result = analysis(name)
    assert not result.totals.partial
    assert result.totals.macs == record(name)["macs"]


@pytest.mark.parametrize("name", NAMES)
def test_no_warnings(name):
    result = analysis(name)
    assert list(result.warnings) == []
    assert all(layer.modelled for layer in result.layers)


@pytest.mark.parametrize("name", [n for n in TORCH_NAMES if n.startswith(tuple(TORCHVISION))])
def test_torch_models_are_torchvisions(name):
    data = record(name)
    assert data["torch_params"] == TORCHVISION[data["model"]][0]
    assert data["published_gmacs"] == TORCHVISION[data["model"]][1]


@pytest.mark.parametrize("name", [n for n in TORCH_NAMES if n.startswith(tuple(TORCHVISION))])
def test_macs_at_224_match_torchvisions_gflops(name):
    data = record(name)
    result = analysis(name, {"batch": 1})
    assert data["input"]["x"][2:] == [224, 224]
    published = TORCHVISION[data["model"]][1] * 1e9
    assert not result.totals.partial
    assert abs(result.totals.macs - published) <= 0.01 * published, f"{result.totals.macs:,} vs {published:,.0f}"
    assert 2 * result.totals.macs == data["macs"]  # recorded at batch 2


@pytest.mark.parametrize("name", ["resnet18_torchscript_nofold", "resnet18_dynamo_noopt"])
def test_batchnorm_kept_counts_torchs_params_and_its_buffers(name):
    assert not record(name)["batchnorm_folded"]
    result = analysis(name)
    assert result.totals.params == TORCHVISION["resnet18"][0]
    assert result.totals.buffers == 2 * 4_800  # running mean and variance of 4,800 channels


# The Keras Applications table's parameter counts, to its 0.1M.
KERAS_PUBLISHED = {"keras_mobilenet_v2": 3.5, "keras_resnet50": 25.6, "keras_efficientnet_b0": 5.3,
                   "keras_inception_v3": 23.9, "keras_densenet121": 8.1, "keras_xception": 22.9}


@pytest.mark.parametrize("name", [f"{model}_tf2onnx" for model in KERAS_PUBLISHED])
def test_keras_models_are_keras_applications(name):
    """Keras' own count is the published one, and the recorded MACs are TensorFlow's own op
    statistics of the traced graph, not only the generator's arithmetic over the layers."""
    data = record(name)
    assert data["published_params"] == f"{KERAS_PUBLISHED[data['model']]}M"
    assert round(data["keras_params"] / 1e6, 1) == KERAS_PUBLISHED[data["model"]]
    assert data["macs"] == data["tensorflow_macs"]


# torchvision's published GFLOPS (MACs, batch 1) of the architectures Keras Applications
# builds alike. Not ResNet50: Keras' is v1, strided in each stage's first 1x1
# convolution, torchvision's v1.5 in its 3x3 (3.86 vs 4.09 GMACs).
KERAS_AS_TORCHVISION = {"keras_mobilenet_v2": 0.301, "keras_densenet121": 2.834, "keras_inception_v3": 5.713,
                        "keras_efficientnet_b0": 0.386}


@pytest.mark.parametrize("name", [f"{model}_tf2onnx" for model in KERAS_AS_TORCHVISION])
def test_keras_macs_match_torchvisions_gflops(name):
    data = record(name)
    result = analysis(name, dict.fromkeys(data["dims"], 1))
    published = KERAS_AS_TORCHVISION[data["model"]] * 1e9
    assert not result.totals.partial
    assert abs(result.totals.macs - published) <= 0.01 * published, f"{result.totals.macs:,} vs {published:,.0f}"
    assert 2 * result.totals.macs == data["macs"]  # recorded at batch 2
