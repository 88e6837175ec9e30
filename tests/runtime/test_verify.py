"""`archcalc verify` and `archcalc export`: every spec runs in onnxruntime and matches."""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from click.testing import CliRunner
from onnx import TensorProto, helper

from archcalc.cli.main import cli
from archcalc.rules import base as registry
from archcalc.rules.base import Output, RuleResult
from archcalc.runtime import verify as verifier

ROOT = Path(__file__).parents[2]
SPECS = sorted(p.name for p in (ROOT / "specs").glob("*.yaml"))
# Verified at 64x64 (same layers, same checks, a fraction of the run): every spec's
# downsampling still leaves a positive size there (AlexNet and GoogLeNet end in adaptive
# pooling). LeNet-5 keeps its own 32x32, its flatten fixes the size.
SMALL_INPUT = {spec: () if spec == "lenet5.yaml" else ("--input-shape", "input=1,3,64,64") for spec in SPECS}
# The transformer specs at 16 tokens (ViT at 32x32: 4 patches; Whisper at 200 frames: 100
# positions): same layers, a fraction of the run. Their weights are generated at full size.
SMALL_INPUT.update({
    "bert_base.yaml": ("--input-shape", "input_ids=1,16", "--input-shape", "token_type_ids=1,16"),
    "gpt2.yaml": ("--input-shape", "input_ids=1,16"),
    "t5_small_encoder.yaml": ("--input-shape", "input_ids=1,16"),
    "vit_b_16.yaml": ("--input-shape", "input=1,3,32,32"),
    "whisper_tiny_encoder.yaml": ("--input-shape", "input_features=1,80,200"),
})
# Its 1.2 B weights take 6 GB and half a minute to generate: tests/readers/test_transformer_specs.py
# verifies the same layers with a smaller vocabulary and 2 of the 16 layers.
TOO_LARGE_TO_VERIFY = {"llama_3_2_1b.yaml"}


@pytest.fixture(autouse=True)
def _run_from_repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def patch_rule(monkeypatch, op: str, mutate) -> None:
    """Replace `op`'s rule by one whose result goes through `mutate(result, inputs)`."""
    honest = registry.get_rule(op)
    monkeypatch.setitem(registry.RULES, op, dataclasses.replace(
        honest, fn=lambda inputs, **attrs: mutate(honest.fn(inputs, **attrs), inputs)))


def save(tmp_path: Path, name: str, nodes, inputs, outputs, initializers=(), opset: int = 17,
         domains: dict[str, int] | None = None) -> str:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in (domains or {}).items()]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    path = tmp_path / name
    onnx.save(model, str(path))
    return str(path)


def write_spec(tmp_path: Path, text: str, name: str = "spec.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# -- every spec, every layer type -----------------------------------------------------------

@pytest.mark.parametrize("spec", [spec for spec in SPECS if spec not in TOO_LARGE_TO_VERIFY])
def test_every_spec_verifies_with_zero_mismatches(spec):
    result = invoke("verify", f"specs/{spec}", *SMALL_INPUT[spec], "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] and report["mismatches"] == []
    assert report["tensors_checked"] == report["layers_checked"] == report["layers_total"] > 0
    assert report["skipped"] == [] and report["data_dependent"] == []


# Every spec layer type, with the options onnxruntime is pickiest about: 'same' padding
# with dilation (exported as explicit pads), silu (exported as x * sigmoid(x)), depthwise
# and asymmetric padding, ceil_mode, transposed convolutions with output_padding.
ALL_2D = """
name: all2d
input: [3, 16, 16]
layers:
  - conv2d: {filters: 8, kernel: 3, padding: same, dilation: 2}
    name: c1
  - batchnorm:
  - relu
  - relu6
  - leaky_relu: {alpha: 0.2}
  - hard_sigmoid
  - elu
  - gelu
  - silu
  - swish
  - hard_swish
  - sigmoid
  - tanh
  - conv2d: {filters: 8, kernel: 3, groups: depthwise, stride: 2, padding: [[0, 1], [0, 1]]}
  - maxpool2d: {kernel: 3, stride: 2, ceil_mode: true, padding: same}
  - minpool2d: {kernel: 3, stride: 1, padding: same}
  - avgpool2d: {kernel: 2, count_include_pad: true, padding: 1}
  - upsample: {scale: 2}
  - zero_padding: 1
  - conv_transpose2d: {filters: 4, kernel: 3, stride: 2, output_padding: 1, padding: 1}
  - maxpool2d: {kernel: 2, dilation: 2}
  - identity:
    name: id
  - dropout: 0.3
    name: drop
  - multiply:
    inputs: [drop, id]
    name: mul
  - add:
    inputs: [mul, drop]
    name: sum
  - concat:
    inputs: [sum, drop]
  - layernorm: {axis: -1}
  - softmax: {axis: 1}
  - global_maxpool:
  - reshape: {shape: [-1]}
  - dense: 5
"""
ALL_1D_3D = """
name: all1d3d
input: [2, 8, 8, 8]
layers:
  - conv3d: {filters: 4, kernel: 3, padding: same, dilation: 2}
  - maxpool3d: 2
  - avgpool3d: {kernel: 2, ceil_mode: true}
  - minpool3d: 1
  - conv_transpose3d: {filters: 2, kernel: 2, stride: 2}
  - global_avgpool:
  - reshape: {shape: [2, 1]}
  - conv1d: {filters: 3, kernel: 1}
  - conv_transpose1d: {filters: 3, kernel: 3}
  - maxpool1d: 1
  - avgpool1d: 1
  - minpool1d: 1
  - flatten
  - dense: 4
"""


# Every transformer layer type and option onnxruntime runs differently: GQA with rotary
# positions, causal, cross-attention, T5's relative bias, gated and plain feed-forward,
# learned and sinusoidal positions, a class token, a tied head.
ALL_TRANSFORMER = """
name: alltransformer
input:
  ids: {shape: [6], dtype: int64}
  image: [3, 8, 8]
layers:
  - embedding: {vocab: 20, dim: 16}
    name: wte
    inputs: [ids]
  - positional: {kind: learned, max_positions: 8}
  - positional: sinusoidal
  - rmsnorm:
  - attention: {heads: 4, kv_heads: 2, causal: true, positional: rotary, bias: false}
  - attention: {heads: 4, relative_buckets: 8, relative_max_distance: 16, scale: 1.0}
  - mlp: {hidden: 24, gated: true, activation: silu, bias: false}
  - mlp: {hidden: 24, activation: gelu_tanh}
    name: tokens
  - patch_embed: {dim: 16, patch: 4, class_token: true}
    name: patches
    inputs: [image]
  - attention: {heads: 2, cross: true, key_bias: false}
    inputs: [tokens, patches]
  - transformer_block: {heads: 2, mlp_hidden: 8, cross: true, causal: true, norm_first: false}
    inputs: [attention_3, patches]
  - project: {units: 20, tie: wte}
  - select_token: 0
  - transpose: [1, 0]
"""


def test_every_layer_type_exports_and_runs_at_the_default_opset(tmp_path):
    from archcalc.readers.spec.catalogue import LAYER_TYPES

    used = set()
    for text in (ALL_2D, ALL_1D_3D, ALL_TRANSFORMER):
        for entry in yaml.safe_load(text)["layers"]:
            key = entry if isinstance(entry, str) else next(k for k in entry if k not in ("name", "inputs"))
            if key != "transformer_block":  # the built-in block, made of the types above
                used.add(LAYER_TYPES[key].name)
    assert used == {t.name for t in LAYER_TYPES.values()}, \
        "add the new layer type to ALL_2D, ALL_1D_3D or ALL_TRANSFORMER"
    for name, text in (("all2d", ALL_2D), ("all1d3d", ALL_1D_3D), ("alltransformer", ALL_TRANSFORMER)):
        spec, path = write_spec(tmp_path, text, f"{name}.yaml"), tmp_path / f"{name}.onnx"
        result = invoke("export", spec, "-o", str(path))
        assert result.exit_code == 0, result.output
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
        result = invoke("verify", spec, "--format", "json")
        assert result.exit_code == 0, result.output
        report = json.loads(result.output)
        assert report["tensors_checked"] == report["layers_checked"] == report["layers_total"]


def test_silu_exports_as_sigmoid_times_x_with_the_layer_name_on_the_output(tmp_path):
    spec = write_spec(tmp_path, "input: [4]\nlayers:\n  - silu:\n    name: act\n")
    path = tmp_path / "silu.onnx"
    assert invoke("export", spec, "-o", str(path)).exit_code == 0
    model = onnx.load(str(path))
    assert [(n.op_type, n.name) for n in model.graph.node] == [("Sigmoid", "act/sigmoid"), ("Mul", "act")]
    assert model.graph.node[-1].output == ["act"]
    assert invoke("verify", spec).exit_code == 0


def test_same_padding_with_dilation_exports_explicit_pads(tmp_path):
    """k=3, d=2: span 5, so 'same' pads 2 on each side of both axes."""
    spec = write_spec(tmp_path, "input: [3, 16, 16]\nlayers:\n  - conv2d: {filters: 4, kernel: 3, "
                                "padding: same, dilation: 2}\n    name: c1\n")
    path = tmp_path / "dil.onnx"
    assert invoke("export", spec, "-o", str(path)).exit_code == 0
    conv = onnx.load(str(path)).graph.node[0]
    attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
    assert "auto_pad" not in attrs and attrs["pads"] == [2, 2, 2, 2]
    assert invoke("verify", spec).exit_code == 0


SYMBOLIC_DENSE = "input: [3, H, W]\nlayers:\n  - conv2d: {filters: 4, kernel: 3, padding: 1}\n  - flatten\n" \
                 "  - dense: 2\n    name: fc\n"


def test_symbolic_weight_shapes_take_the_bound_dims(tmp_path):
    spec, path = write_spec(tmp_path, SYMBOLIC_DENSE), tmp_path / "sym.onnx"
    result = invoke("export", spec, "-o", str(path), "--dim", "H=8", "--dim", "W=8")
    assert result.exit_code == 0, result.output
    shapes = {t.name: list(t.dims) for t in onnx.load(str(path)).graph.initializer}
    assert shapes["fc.weight"] == [2, 4 * 8 * 8]
    assert invoke("verify", spec, "--dim", "H=8", "--dim", "W=8").exit_code == 0


def test_unbound_symbolic_weight_is_bad_input_naming_the_file(tmp_path):
    spec = write_spec(tmp_path, SYMBOLIC_DENSE)
    result = invoke("export", spec, "-o", str(tmp_path / "sym.onnx"))
    assert result.exit_code == 2 and spec in result.output and "--dim H=" in result.output
    assert "Traceback" not in result.output


# -- export ---------------------------------------------------------------------------------

@pytest.mark.parametrize("weights", ["random", "zeros", "external"])
def test_export_writes_a_checked_model(tmp_path, weights):
    path = tmp_path / "lenet5.onnx"
    result = invoke("export", "specs/lenet5.yaml", "-o", str(path), "--weights", weights)
    assert result.exit_code == 0, result.output
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    names = [node.name for node in model.graph.node]
    assert names[:3] == ["conv1", "relu_1", "pool1"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    initializer_shapes = {t.name: list(t.dims) for t in model.graph.initializer}
    assert initializer_shapes["conv1.weight"] == [6, 1, 5, 5]
    assert initializer_shapes["fc1.weight"] == [120, 400]
    if weights == "external":
        assert (tmp_path / "lenet5.onnx.data").stat().st_size == 61_706 * 4


def test_omitted_weights_do_what_the_help_promises(tmp_path):
    """--help: archcalc analyzes and verifies the file, onnx.load(..., load_external_data=False)
    reads it; onnx.checker, a plain onnx.load and onnxruntime need the data, not written."""
    help_text = " ".join(invoke("export", "--help").output.split())
    assert "load_external_data=False" in help_text and "not written" in help_text
    path = tmp_path / "lenet5.onnx"
    assert invoke("export", "specs/lenet5.yaml", "-o", str(path), "--weights", "omit").exit_code == 0
    assert not (tmp_path / "lenet5.onnx.data").exists()
    model = onnx.load(str(path), load_external_data=False)
    assert {t.name: list(t.dims) for t in model.graph.initializer}["fc1.weight"] == [120, 400]
    offsets = [int(e.value) for t in model.graph.initializer for e in t.external_data if e.key == "offset"]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)  # a self-consistent layout
    with pytest.raises(Exception, match="lenet5.onnx.data"):
        onnx.load(str(path))
    with pytest.raises(onnx.checker.ValidationError):
        onnx.checker.check_model(model)
    analysed = json.loads(invoke("analyze", str(path), "--format", "json").output)
    assert analysed["totals"]["params"] == 61_706
    assert invoke("verify", str(path)).exit_code == 0


def test_export_min_pooling_as_standard_ops(tmp_path):
    spec = write_spec(tmp_path, "input: [3, 8, 8]\nlayers:\n  - minpool: 2\n    name: pool\n")
    path = tmp_path / "minpool.onnx"
    assert invoke("export", spec, "-o", str(path)).exit_code == 0
    model = onnx.load(str(path))
    assert [n.op_type for n in model.graph.node] == ["Neg", "MaxPool", "Neg"]
    onnx.checker.check_model(model, full_check=True)
    assert invoke("verify", spec).exit_code == 0


def test_export_refuses_too_old_opset(tmp_path):
    spec = write_spec(tmp_path, "input: [8]\nlayers:\n  - gelu\n")
    result = invoke("export", spec, "-o", str(tmp_path / "g.onnx"), "--opset", "17")
    assert result.exit_code == 2
    assert "Gelu needs opset 20" in result.output


@pytest.mark.parametrize("spec", SPECS)
def test_exported_spec_analyses_to_the_same_numbers(tmp_path, spec):
    from archcalc.engine.inference import analyze
    from archcalc.readers.load import load_model

    path = tmp_path / "model.onnx"
    assert invoke("export", f"specs/{spec}", "-o", str(path), "--weights", "omit").exit_code == 0
    original, exported = analyze(load_model(f"specs/{spec}")), analyze(load_model(str(path)))
    assert exported.totals.params == original.totals.params
    assert exported.totals.buffers == original.totals.buffers
    assert exported.totals.macs == original.totals.macs
    assert exported.warnings == ()
    # Min pooling becomes three ops; every other layer keeps its name and output shape.
    shapes = {t.name: t.shape for t in exported.tensors.values()}
    assert all(shapes[layer.name] == layer.outputs[0].shape for layer in original.layers)


# -- wrong rules are caught -----------------------------------------------------------------

def _fc3_one_column_too_many(result, inputs):
    # Wrong on the last layer only, so every weight exported from the analysis is still right.
    rows, columns = result.outputs[0].shape
    wrong = (rows, columns + 1) if columns == 10 else (rows, columns)
    return RuleResult(outputs=(Output(wrong),), macs=result.macs, flops=result.flops, weights=result.weights)


def test_a_wrong_rule_is_caught(monkeypatch):
    patch_rule(monkeypatch, "Gemm", _fc3_one_column_too_many)
    result = invoke("verify", "specs/lenet5.yaml")
    assert result.exit_code == 1, result.output
    assert "1 mismatch" in result.output and "1 mismatches" not in result.output
    assert "fc3" in result.output and "[1, 11]" in result.output and "[1, 10]" in result.output


def test_json_mismatches_give_shapes_as_lists(monkeypatch):
    patch_rule(monkeypatch, "Gemm", _fc3_one_column_too_many)
    result = invoke("verify", "specs/lenet5.yaml", "--format", "json")
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["ok"] is False
    assert report["mismatches"] == [{"kind": "shape", "layer": "fc3", "tensor": "fc3", "expected": [1, 11],
                                     "actual": [1, 10]}]


def test_doubled_conv_macs_are_caught_by_the_observed_reference(monkeypatch):
    """conv1 of LeNet-5: observed_macs = prod([1, 6, 28, 28]) * prod([1, 5, 5]) = 117,600."""
    patch_rule(monkeypatch, "Conv", lambda r, i: dataclasses.replace(r, macs=2 * r.macs, flops=2 * r.flops))
    result = invoke("verify", "specs/lenet5.yaml", "--format", "json")
    assert result.exit_code == 1, result.output
    mismatches = json.loads(result.output)["mismatches"]
    conv1 = next(m for m in mismatches if m["layer"] == "conv1" and m["kind"] == "macs")
    assert conv1 == {"kind": "macs", "layer": "conv1", "tensor": "", "expected": 2 * 117_600, "actual": 117_600}
    assert {m["layer"] for m in mismatches if m["kind"] == "macs"} == {"conv1", "conv2"}


def test_observed_macs_are_declared_for_the_compute_ops():
    for op in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
        assert registry.get_rule(op).observed_macs is not None, op
    gemm = registry.get_rule("Gemm").observed_macs
    assert gemm([(3, 5), (5, 7)], [(3, 7)], {}) == 3 * 7 * 5
    assert gemm([(5, 3), (5, 7)], [(3, 7)], {"transA": 1}) == 3 * 7 * 5
    assert registry.get_rule("MatMul").observed_macs([(2, 3, 5), (5, 7)], [(2, 3, 7)], {}) == 2 * 3 * 7 * 5
    # ConvTranspose: every input element meets every weight of its group once.
    assert registry.get_rule("ConvTranspose").observed_macs([(1, 4, 5, 5), (4, 2, 3, 3)], [(1, 2, 11, 11)],
                                                            {}) == 100 * 2 * 9


def test_a_wrong_dtype_is_caught(monkeypatch):
    patch_rule(monkeypatch, "Relu", lambda r, i: dataclasses.replace(
        r, outputs=tuple(dataclasses.replace(o, dtype="float16") for o in r.outputs)))
    result = invoke("verify", "specs/lenet5.yaml", "--format", "json")
    assert result.exit_code == 1, result.output
    dtypes = [m for m in json.loads(result.output)["mismatches"] if m["kind"] == "dtype"]
    assert dtypes and all(m["expected"] == "float16" and m["actual"] == "float32" for m in dtypes)
    assert dtypes[0]["layer"] == "relu_1"


def test_a_wrong_rule_onnxruntime_refuses_is_a_failed_verification(monkeypatch):
    """conv1 claimed to give 7 channels: conv2's exported weight then expects 7, which
    onnxruntime's own inference disputes. archcalc built that graph, so its inference is
    wrong (exit 1), not the user's input (exit 2)."""
    def seven_channels(result, inputs):
        shape = result.outputs[0].shape
        if shape[1] == 6:
            return dataclasses.replace(result, outputs=(Output((shape[0], 7, *shape[2:])),))
        return result

    patch_rule(monkeypatch, "Conv", seven_channels)
    result = invoke("verify", "specs/lenet5.yaml", "--format", "json")
    assert result.exit_code == 1, result.output
    (mismatch,) = json.loads(result.output)["mismatches"]
    assert mismatch["kind"] == "onnxruntime" and mismatch["layer"] == "conv2"
    assert "onnxruntime failed while running" in mismatch["actual"] and "channels" in mismatch["actual"]


# -- bad input and failures -----------------------------------------------------------------

def test_a_model_onnxruntime_refuses_is_bad_input_naming_the_node(tmp_path):
    node = helper.make_node("FancyOp", ["x"], ["y"], name="fancy", domain="com.example")
    path = save(tmp_path, "custom.onnx", [node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], domains={"com.example": 1})
    result = invoke("verify", path)
    assert result.exit_code == 2
    assert "onnxruntime refused the model at node 'fancy' (com.example:FancyOp)" in result.output
    assert path in result.output and "Traceback" not in result.output


def test_a_failure_during_the_run_is_bad_input_without_onnxruntime_log(tmp_path, capfd):
    """onnxruntime accepts a dilated conv with auto_pad SAME_UPPER but fails running it."""
    weight = onnx.numpy_helper.from_array(np.ones((2, 1, 3, 3), np.float32), "w")
    conv = helper.make_node("Conv", ["x", "w"], ["y"], name="dilated", auto_pad="SAME_UPPER", dilations=[2, 2])
    path = save(tmp_path, "run.onnx", [conv], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [weight])
    result = invoke("verify", path)
    assert result.exit_code == 2, result.output
    assert "onnxruntime failed while running at node 'dilated' (Conv)" in result.output
    assert "Traceback" not in result.output
    assert "[E:onnxruntime" not in capfd.readouterr().err


def test_an_input_archcalc_cannot_generate_is_bad_input(tmp_path):
    node = helper.make_node("Identity", ["text"], ["y"], name="same")
    path = save(tmp_path, "string.onnx", [node], [helper.make_tensor_value_info("text", TensorProto.STRING, [2])],
                [helper.make_tensor_value_info("y", TensorProto.STRING, [2])])
    result = invoke("verify", path)
    assert result.exit_code == 2, result.output
    assert "input 'text' is string" in result.output and "Traceback" not in result.output


def test_a_corrupt_file_is_bad_input(tmp_path):
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(b"\x08\x07\x12\xff\xff\xff\x0fnot a model")
    result = invoke("verify", str(path))
    assert result.exit_code == 2 and str(path) in result.output and "Traceback" not in result.output


def test_memory_bound_refuses_before_running():
    result = invoke("verify", "specs/vgg16.yaml", "--max-memory", "100MiB")
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "over the 100.00 MiB limit" in text and "--max-memory" in text
    assert "527.79 MiB" in text and "0.00 GiB" not in text  # vgg16's weights, in readable units


def test_memory_estimate_is_above_the_measured_peak(tmp_path):
    """The fitted estimate must not undercount: ResNet-18 in a child process, peak RSS
    (VmHWM, which exec resets; ru_maxrss would count the forked pytest's pages too)."""
    code = ("import re, sys; from archcalc.cli.main import cli; "
            "sys.argv = ['archcalc', 'verify', 'specs/resnet18.yaml', '--format', 'json']\n"
            "try: cli(prog_name='archcalc')\n"
            "except SystemExit: pass\n"
            "print(re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    peak = int(done.stderr.strip().splitlines()[-1]) * 1024
    from archcalc.engine.inference import analyze
    from archcalc.readers.load import load_model

    estimate = verifier.estimate_run_bytes(analyze(load_model("specs/resnet18.yaml")))
    assert peak <= estimate <= 2 * peak


def test_bad_memory_size_is_bad_input():
    result = invoke("verify", "specs/lenet5.yaml", "--max-memory", "lots")
    assert result.exit_code == 2
    assert "--max-memory" in result.output and "'lots' is not a quantity" in result.output


# -- weights: missing, large ----------------------------------------------------------------

def test_an_onnx_fixture_with_missing_external_weights_runs_on_generated_ones():
    path = "tests/fixtures/onnx/resnet18_torchscript.onnx"
    model = onnx.load(path, load_external_data=False)
    locations = {e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"}
    assert locations and not any((ROOT / "tests/fixtures/onnx" / name).exists() for name in locations)
    result = invoke("verify", path, "--input-shape", "x=1,3,64,64", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["tensors_checked"] == 49


def test_large_models_run_from_an_external_data_file(monkeypatch):
    """Weights over EXTERNAL_DATA_ABOVE (and generated tensors over SPARSE_ABOVE, left as
    holes) go through a temporary file: the path a 2 GiB model takes, on LeNet-5."""
    import onnxruntime

    assert verifier.EXTERNAL_DATA_ABOVE < 2**31  # protobuf's limit is never reached inline
    monkeypatch.setattr(verifier, "EXTERNAL_DATA_ABOVE", 0)
    monkeypatch.setattr(verifier, "SPARSE_ABOVE", 1000)  # fc1.weight (48,000) becomes a hole
    sources = []
    real = onnxruntime.InferenceSession

    def recording(source, *args, **kwargs):
        sources.append(source)
        return real(source, *args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", recording)
    result = invoke("verify", "specs/lenet5.yaml", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["tensors_checked"] == 12
    (model_path,) = [s for s in sources if isinstance(s, str)]  # the rest: export's opset probe
    assert model_path.endswith("model.onnx") and all(len(s) < 1000 for s in sources if isinstance(s, bytes))


# -- what is and is not compared ------------------------------------------------------------

def test_nothing_to_check_is_not_called_ok(tmp_path):
    """Unique has no rule (its output length depends on the data): its layer is unmodelled."""
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [6])]
    node = helper.make_node("Unique", ["x"], ["y"], name="r")
    path = save(tmp_path, "unique.onnx", [node], inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    result = invoke("verify", path)
    assert result.exit_code == 0, result.output
    assert "nothing to check: all 1 layers are unmodelled" in result.output and "verify ok" not in result.output
    report = json.loads(invoke("verify", path, "--format", "json").output)
    assert report["nothing_checked"] and report["skipped"][0]["name"] == "r"


@pytest.mark.parametrize("bound", [(), ("--dim", "nz_count=3")])
def test_data_dependent_dims_are_reported_not_mismatched(tmp_path, bound):
    """NonZero of 120 random values in [0, 1): all non-zero, observed [4, 120]."""
    node = helper.make_node("NonZero", ["x"], ["y"], name="nz")
    path = save(tmp_path, "nonzero.onnx", [node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4, 5])],
                [helper.make_tensor_value_info("y", TensorProto.INT64, None)])
    result = invoke("verify", path, *bound, "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["mismatches"] == [] and report["tensors_checked"] == 1
    assert report["data_dependent"] == [{"layer": "nz", "tensor": "y", "axis": 1, "dim": "nz_count", "observed": 120}]
    assert "data-dependent: nz -> y axis 1 (nz_count), observed 120" in invoke("verify", path, *bound).output


def test_constants_folded_into_weights_are_compared_too():
    """swin_t (dynamo) has 3 ConstantOfShape nodes archcalc folds into weights, not layers."""
    result = invoke("verify", "tests/fixtures/onnx/swin_t_dynamo.onnx", "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["tensors_checked"] == report["layers_checked"] + 3 and report["skipped"] == []


# -- profile and progress -------------------------------------------------------------------

def test_profile_shows_per_layer_time():
    result = invoke("verify", "specs/lenet5.yaml", "--profile")
    assert result.exit_code == 0, result.output
    assert "Per-layer time" in result.output and "GMAC/s" in result.output
    assert "conv1" in result.output


def test_profile_json_has_per_layer_macs_and_throughput():
    report = json.loads(invoke("verify", "specs/lenet5.yaml", "--profile", "--format", "json").output)
    conv1 = next(row for row in report["layer_times"] if row["name"] == "conv1")
    assert conv1["op"] == "Conv" and conv1["macs"] == 117_600
    assert conv1["time_us"] == report["node_times_us"]["conv1"]
    assert conv1["gmac_per_s"] == pytest.approx(117_600 / conv1["time_us"] / 1e3, rel=1e-2, abs=1e-3)


@pytest.mark.parametrize("spec", ["lenet5.yaml", "resnet18.yaml"])  # weights inline; in an external file
def test_profile_times_the_model_as_deployed(spec, monkeypatch):
    """Shapes are compared on a run with every tensor an output; the times come from another
    run with only the model's own outputs, as deployed, every layer's node timed."""
    from archcalc.readers.load import load_model

    timed: list[onnx.ModelProto] = []
    real = verifier._deployed_node_times

    def recording(source, feeds, scratch_dir):
        timed.append(onnx.load_from_string(source) if isinstance(source, bytes)
                     else onnx.load(source, load_external_data=False))
        return real(source, feeds, scratch_dir)

    monkeypatch.setattr(verifier, "_deployed_node_times", recording)
    graph = load_model(f"specs/{spec}", {"input": (1, 3, 64, 64)} if spec != "lenet5.yaml" else None)
    analysis = verifier.analyze_for_verify(graph, {})
    report = verifier.verify(graph, analysis, profile=True)
    assert report.ok and report.tensors_checked > len(graph.outputs)
    (deployed,) = timed
    assert [output.name for output in deployed.graph.output] == graph.outputs
    assert {row["name"] for row in report.layer_times} == {layer.name for layer in analysis.layers}


def test_progress_bar_on_a_terminal_and_nothing_when_piped():
    from rich.console import Console

    from archcalc.engine.inference import analyze
    from archcalc.readers.load import load_model
    from archcalc.report.progress import terminal_progress

    graph = load_model("specs/resnet18.yaml")
    analysis = analyze(graph)
    screen = io.StringIO()
    with terminal_progress(Console(file=screen, force_terminal=True, width=100)) as progress:
        assert progress is not None
        verifier.verify(graph, analysis, progress=progress)
    for phase in ("preparing weights", "building the onnxruntime session", "running", "comparing"):
        assert phase in screen.getvalue()
    with terminal_progress(Console(file=io.StringIO())) as progress:
        assert progress is None
    assert "preparing weights" not in invoke("verify", "specs/lenet5.yaml").output


def test_verdict_counts_read_in_the_singular_too(tmp_path):
    """One Relu on [1, 4]: one layer, one output tensor checked ("1 tensors" read badly)."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], "one",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    path = tmp_path / "one.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    result = invoke("verify", str(path))
    assert result.exit_code == 0, result.output
    assert "verify ok: 1 tensor and 1 layer checked against onnxruntime, 0 mismatches" in result.output
