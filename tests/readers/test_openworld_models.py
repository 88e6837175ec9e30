"""Open-world exports: small Hugging Face transformers models (BERT, GPT-2, the T5 and
Whisper encoders, a Llama decoder with grouped-query attention and rotary positions, ViT)
and timm models (ConvNeXt, DeiT, MobileViT, EfficientNet, RegNet, Swin V2, MaxViT), built
with random weights from configs, exported by both torch exporters with a dynamic batch
(and sequence), some static and one in float16
(tests/fixtures/openworld/make_openworld_fixtures.py, run by hand; weights stripped).

For each, archcalc must infer exactly onnxruntime's shape of every tensor, count torch's
parameters (less what the exporter folded, and plus what it stored, each named below),
count MACs within 1% of torch's FlopCounterMode with attention computed eagerly, and model
every op.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from archcalc.core.dims import bind_shape
from archcalc.core.results import Analysis
from archcalc.engine.inference import analyze
from archcalc.readers.onnx import load_onnx

FIXTURES = Path(__file__).parents[1] / "fixtures" / "openworld"
NAMES = sorted(path.stem for path in FIXTURES.glob("*.onnx"))
HF_MODELS = ("hf_bert", "hf_gpt2", "hf_t5_encoder", "hf_llama", "hf_vit", "hf_whisper_encoder")
TIMM_MODELS = ("timm_convnext", "timm_deit", "timm_mobilevit", "timm_efficientnet", "timm_regnet", "timm_swinv2",
               "timm_maxvit")
# The dynamo exporter fails on MaxViT (see the generator): TorchScript only.
DYNAMO_FAILS = {"timm_maxvit"}


def record(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


_ANALYSES: dict[str, Analysis] = {}


def analysis(name: str) -> Analysis:
    """archcalc's analysis of a fixture at the recorded run's dims (computed once per fixture)."""
    if name not in _ANALYSES:
        _ANALYSES[name] = analyze(load_onnx(str(FIXTURES / f"{name}.onnx")), record(name)["dims"])
    return _ANALYSES[name]


def test_every_model_exporter_and_variant_is_there():
    for model in HF_MODELS + TIMM_MODELS:
        wanted = {"torchscript"} if model in DYNAMO_FAILS else {"torchscript", "dynamo"}
        assert {f"{model}_{exporter}" for exporter in wanted} <= set(NAMES)
    variants = {name.rsplit("_", 1)[1] for name in NAMES}
    assert {"static", "fp16"} <= variants
    assert sum((FIXTURES / f"{name}.onnx").stat().st_size for name in NAMES) < 3 * 1024 * 1024


@pytest.mark.parametrize("name", NAMES)
def test_every_tensor_shape_is_onnxruntimes(name):
    data = record(name)
    result = analysis(name)
    env = {**result.bindings, **data["dims"]}
    problems = []
    for tensor, shape in data["shapes"].items():
        ours = result.tensors.get(tensor)
        if ours is None or ours.shape is None:
            problems.append(f"{tensor}: archcalc has no shape, onnxruntime {shape}")
        elif list(bind_shape(ours.shape, env)) != shape:
            problems.append(f"{tensor}: archcalc {list(bind_shape(ours.shape, env))} "
                            f"({[str(d) for d in ours.shape]}), onnxruntime {shape}")
    assert not problems, f"{len(problems)} of {len(data['shapes'])} shapes differ:\n" + "\n".join(problems)


# Values the exporters stored as initializers, which an ONNX file cannot tell from learned
# ones without reading them (filled in as each is found, with its arithmetic).
EXPORTER_STORED: dict[str, int] = {}


@pytest.mark.parametrize("name", NAMES)
def test_params_are_torchs(name):
    data = record(name)
    assert analysis(name).totals.params == data["params"] + EXPORTER_STORED.get(name, 0), (
        f"torch {data['torch_params']:,}, after BatchNorm folding {data['params']:,}")


@pytest.mark.parametrize("name", NAMES)
def test_macs_within_one_percent_of_flop_counter(name):
    result = analysis(name)
    reference = record(name)["macs"]
    assert not result.totals.partial
    assert abs(result.totals.macs - reference) <= 0.01 * reference, f"{result.totals.macs:,} vs {reference:,}"


@pytest.mark.parametrize("name", NAMES)
def test_every_op_modelled_and_no_warnings(name):
    result = analysis(name)
    assert [layer.name for layer in result.layers if not layer.modelled] == []
    assert list(result.warnings) == []
