"""The model zoo in specs/ against published numbers.

Params and MACs are torchvision's published figures: each weights enum's
`meta["num_params"]` and `meta["_ops"]`, the "Params" and "GFLOPS" columns of the table at
https://pytorch.org/vision/stable/models.html. Params must match exactly; GFLOPS, which
torchvision counts as multiply-accumulates, within 1%.
LeNet-5 is not in torchvision; its numbers are the hand count for the seed's layout
(conv 5x5 6 -> pool -> conv 5x5 16 -> pool -> 120 -> 84 -> 10 on a 32x32 input).

The structural checks catch a wrong architecture whose totals happen to come out close:
conv counts, the last feature map before pooling, a few torchvision state_dict weight
shapes, and BatchNorm bookkeeping (2 params and 2 buffers per channel).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from archcalc.core.results import Analysis
from archcalc.engine.inference import analyze
from archcalc.readers.spec import load_spec

SPECS = Path(__file__).resolve().parents[2] / "specs"


@dataclass(frozen=True)
class Published:
    spec: str
    params: int            # torchvision num_params (exact)
    gmacs: float           # torchvision "GFLOPS", i.e. GMACs (within 1%)
    convs: int             # Conv layers in the torchvision model
    feature_layer: str     # the layer whose output is the last feature map ...
    feature_shape: tuple   # ... and its [C, H, W] at a 224x224 input
    classes: int = 1000


ZOO = [
    Published("lenet5", 61_706, 0.000_416_52, 2, "pool2", (16, 5, 5), classes=10),
    Published("alexnet", 61_100_840, 0.714, 5, "features.12", (256, 6, 6)),
    Published("vgg16", 138_357_544, 15.47, 13, "features.30", (512, 7, 7)),
    Published("vgg19", 143_667_240, 19.632, 16, "features.36", (512, 7, 7)),
    Published("googlenet", 6_624_904, 1.498, 57, "inception5b.cat", (1024, 7, 7)),
    Published("resnet18", 11_689_512, 1.814, 20, "layer4.1.relu_1", (512, 7, 7)),
    Published("resnet34", 21_797_672, 3.664, 36, "layer4.2.relu_1", (512, 7, 7)),
    Published("resnet50", 25_557_032, 4.089, 53, "layer4.2.relu_2", (2048, 7, 7)),
    Published("resnet101", 44_549_160, 7.801, 104, "layer4.2.relu_2", (2048, 7, 7)),
    Published("resnet152", 60_192_808, 11.514, 155, "layer4.2.relu_2", (2048, 7, 7)),
    Published("densenet121", 7_978_856, 2.834, 120, "features.norm5", (1024, 7, 7)),
    Published("mobilenet_v2", 3_504_872, 0.301, 52, "features.18.2", (1280, 7, 7)),
]
BY_NAME = {model.spec: model for model in ZOO}
zoo = pytest.mark.parametrize("model", ZOO, ids=[model.spec for model in ZOO])


@cache
def analysis(spec: str) -> Analysis:
    return analyze(load_spec(str(SPECS / f"{spec}.yaml")))


def dims(shape) -> list:
    """A shape as plain values: ints stay ints, symbolic dims become their names."""
    return [d if isinstance(d, int) else str(d) for d in shape]


def layers(a: Analysis, op: str) -> list:
    return [layer for layer in a.layers if layer.op == op]


@zoo
def test_params_match_torchvision_exactly(model):
    assert analysis(model.spec).totals.params == model.params


@zoo
def test_macs_match_torchvision_gflops(model):
    assert analysis(model.spec).totals.macs / 1e9 == pytest.approx(model.gmacs, rel=0.01)


@zoo
def test_every_layer_is_modelled(model):
    a = analysis(model.spec)
    assert not a.totals.partial
    assert a.warnings == ()


@zoo
def test_conv_count(model):
    assert len(layers(analysis(model.spec), "Conv")) == model.convs


@zoo
def test_last_feature_map_and_output(model):
    a = analysis(model.spec)
    feature = a.layer(model.feature_layer)
    assert feature is not None, f"no layer named {model.feature_layer}"
    assert dims(feature.outputs[0].shape) == ["batch", *model.feature_shape]
    assert dims(a.layers[-1].outputs[0].shape) == ["batch", model.classes]


@zoo
def test_batchnorm_has_two_params_and_two_buffers_per_channel(model):
    a = analysis(model.spec)
    norms = layers(a, "BatchNormalization")
    channels = sum(layer.outputs[0].shape[1] for layer in norms)
    assert all(layer.params == layer.buffers == 2 * layer.outputs[0].shape[1] for layer in norms)
    assert a.totals.buffers == 2 * channels
    # Everything else is weights and biases: no other layer holds buffers.
    assert sum(layer.buffers for layer in a.layers) == a.totals.buffers


# A few torchvision state_dict entries with their shapes ([out, in/groups, kH, kW] for
# convs, [out, in] for linear layers). DenseNet's repeated layers are `denselayer.0`
# where torchvision has `denselayer1` (see the note in specs/densenet121.yaml).
TORCHVISION_WEIGHTS = [
    ("alexnet", "features.0.weight", [64, 3, 11, 11]),
    ("alexnet", "classifier.1.weight", [4096, 9216]),
    ("vgg16", "features.28.weight", [512, 512, 3, 3]),
    ("vgg19", "features.34.weight", [512, 512, 3, 3]),
    ("vgg19", "classifier.0.weight", [4096, 25088]),
    # torchvision's "5x5" branch is a 3x3 conv (pytorch/vision#906).
    ("googlenet", "inception3a.branch3.1.conv.weight", [32, 16, 3, 3]),
    ("googlenet", "inception5b.branch4.1.conv.weight", [128, 832, 1, 1]),
    ("googlenet", "fc.weight", [1000, 1024]),
    ("resnet18", "layer2.0.downsample.0.weight", [128, 64, 1, 1]),
    ("resnet34", "layer3.5.conv2.weight", [256, 256, 3, 3]),
    ("resnet50", "layer1.0.downsample.0.weight", [256, 64, 1, 1]),
    ("resnet50", "layer4.2.conv3.weight", [2048, 512, 1, 1]),
    ("resnet101", "layer3.22.bn3.weight", [1024]),
    ("resnet152", "layer2.7.conv2.weight", [128, 128, 3, 3]),
    ("resnet152", "fc.weight", [1000, 2048]),
    ("densenet121", "features.denseblock1.denselayer.0.conv1.weight", [128, 64, 1, 1]),
    ("densenet121", "features.denseblock4.denselayer.15.conv1.weight", [128, 992, 1, 1]),
    ("densenet121", "features.transition3.conv.weight", [512, 1024, 1, 1]),
    ("densenet121", "classifier.weight", [1000, 1024]),
    ("mobilenet_v2", "features.1.conv.0.0.weight", [32, 1, 3, 3]),      # t=1: no expansion
    ("mobilenet_v2", "features.2.conv.0.0.weight", [96, 16, 1, 1]),     # t=6 expansion
    ("mobilenet_v2", "features.17.conv.1.0.weight", [960, 1, 3, 3]),    # depthwise
    ("mobilenet_v2", "classifier.1.weight", [1000, 1280]),
]


@pytest.mark.parametrize("spec, weight, shape", TORCHVISION_WEIGHTS,
                         ids=[f"{spec}:{weight}" for spec, weight, _ in TORCHVISION_WEIGHTS])
def test_torchvision_weight_shapes(spec, weight, shape):
    tensor = analysis(spec).tensors.get(weight)
    assert tensor is not None, f"{spec} has no weight {weight}"
    assert dims(tensor.shape) == shape


# Residual adds: one per block in ResNets; in MobileNetV2 only where stride is 1 and the
# channels do not change (torchvision's use_res_connect): 1 + 2 + 3 + 2 + 2 = 10.
@pytest.mark.parametrize("spec, adds", [("resnet18", 8), ("resnet34", 16), ("resnet50", 16),
                                        ("resnet101", 33), ("resnet152", 50), ("mobilenet_v2", 10)])
def test_residual_adds(spec, adds):
    assert len(layers(analysis(spec), "Sum")) == adds


def test_googlenet_batchnorm_eps_is_torchvision_basicconv2d():
    norms = layers(analysis("googlenet"), "BatchNormalization")
    assert norms and all(layer.attrs["epsilon"] == pytest.approx(0.001) for layer in norms)


def test_densenet_concat_grows_by_growth_rate():
    # Each dense layer adds growth_rate = 32 channels: block 4 goes 512 -> 1024 in 16 layers.
    cats = [layer for layer in analysis("densenet121").layers
            if layer.name.startswith("features.denseblock4.") and layer.op == "Concat"]
    assert [layer.outputs[0].shape[1] for layer in cats] == list(range(544, 1025, 32))


def test_every_spec_in_the_zoo_is_pinned():
    # The transformer specs are pinned to the library models' counts in test_transformer_specs.py.
    reference = json.loads((SPECS.parent / "tests" / "fixtures" / "transformer_reference.json").read_text())
    transformers = {name for name in reference if not name.startswith("_")}
    assert sorted(path.stem for path in SPECS.glob("*.yaml")) == sorted({*BY_NAME, *transformers})
