"""Training cost: backward MACs from the seed's backpropagation rules, and step memory.

Hand-worked on a tiny network, and checked against PyTorch: the bytes of tensors saved
for backward in tests/fixtures/training_reference.json were measured in a real training
step by tests/fixtures/make_training_reference.py (torch is not needed to run this file).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from archcalc.cli.main import cli
from archcalc.engine.inference import analyze
from archcalc.engine.training import largest_batch, training_cost
from archcalc.readers.load import load_model
from archcalc.readers.spec import load_spec
from archcalc.readers.spec.build import parse_spec

ROOT = Path(__file__).parents[2]
REFERENCE = json.loads((ROOT / "tests" / "fixtures" / "training_reference.json").read_text())

TINY = """
input: [1, 4, 4]
layers:
  - conv2d: {filters: 2, kernel: 3}
    name: conv
  - relu:
    name: relu
  - flatten:
    name: flatten
  - dense: 3
    name: fc
"""


def step(spec_text: str, batch: int = 2, optimizer: str = "adam", precision: str = "fp32"):
    graph = parse_spec(spec_text)
    return training_cost(graph, analyze(graph, {"batch": batch}), optimizer, precision)


def by_name(training):
    return {layer.name: layer for layer in training.layers}


def test_tiny_network_by_hand():
    training = step(TINY)
    layers = by_name(training)
    # conv: N*M*Ho*Wo*C*k*k = 2*2*2*2*1*9 = 144 MACs. Its input is the image, which needs no
    # gradient, so backward is dL/dW = I * dL/dO only: 144.
    conv = layers["conv"]
    assert (conv.forward_macs, conv.grad_input_macs, conv.grad_weight_macs) == (144, 0, 144)
    # fc: N*out*in = 2*3*8 = 48; dL/dx and dL/dW: 48 each.
    assert (layers["fc"].forward_macs, layers["fc"].grad_input_macs, layers["fc"].grad_weight_macs) == (48, 48, 48)
    assert training.totals.backward_macs == 240
    # Saved for backward, fp32: conv its input 2*1*4*4*4 = 128 B; relu its output
    # 2*2*2*2*4 = 64 B; flatten is a view, so fc's input is relu's output again: 0 B.
    assert [layers[n].saved_bytes for n in ("conv", "relu", "flatten", "fc")] == [128, 64, 0, 0]
    # params: conv 2*9 + 2 = 20, fc (8 + 1)*3 = 27 -> 47. Adam: two fp32 states each.
    totals = training.totals
    assert (totals.weight_bytes, totals.gradient_bytes, totals.optimizer_bytes) == (188, 188, 376)
    assert totals.memory_bytes == 188 + 188 + 376 + 192


@pytest.mark.parametrize("optimizer, states", [("sgd", 0), ("momentum", 1), ("adam", 2), ("adamw", 2)])
def test_optimizer_state(optimizer, states):
    assert step(TINY, optimizer=optimizer).totals.optimizer_bytes == 47 * 4 * states


def test_mixed_precision_halves_activations_only():
    totals = step(TINY, precision="mixed").totals
    assert (totals.weight_bytes, totals.gradient_bytes, totals.saved_activation_bytes) == (188, 188, 96)
    assert totals.optimizer_bytes == 47 * 2 * 4  # AMP's Adam keeps fp32 state beside fp32 weights
    half = step(TINY, precision="fp16").totals
    assert (half.weight_bytes, half.gradient_bytes, half.saved_activation_bytes) == (94, 94, 96)
    # Pure half precision: torch.optim.Adam's state is zeros_like(param), so half too.
    assert half.optimizer_bytes == 47 * 2 * 2


def test_frozen_feature_extractor_has_no_backward():
    training = step(TINY.replace("    name: conv\n", "    name: conv\n    trainable: false\n"))
    layers = by_name(training)
    # Nothing before fc depends on a trainable weight: no backward through conv or relu.
    assert not layers["conv"].on_gradient_path and layers["conv"].backward_macs == 0
    assert not layers["relu"].on_gradient_path
    # fc needs dL/dW only (48), and keeps its input (relu's output, via the flatten view): 64 B.
    assert (layers["fc"].grad_input_macs, layers["fc"].grad_weight_macs, layers["fc"].saved_bytes) == (0, 48, 64)
    assert training.totals.gradient_bytes == 27 * 4


@pytest.mark.parametrize("spec, batch, key", [
    ("lenet5", 4, "lenet5_batch4"),
    ("resnet18", 2, "resnet18_batch2"),
])
def test_saved_activations_equal_pytorch(spec, batch, key):
    graph = load_spec(str(ROOT / "specs" / f"{spec}.yaml"))
    training = training_cost(graph, analyze(graph, {"batch": batch}), "sgd", "fp32")
    assert training.totals.saved_activation_bytes == REFERENCE[key]["saved_bytes"]
    assert analyze(graph).totals.trainable_params == REFERENCE[key]["trainable_params"]


def test_saved_activations_with_frozen_backbone_equal_pytorch():
    text = (ROOT / "specs" / "resnet18.yaml").read_text() + "freeze_until: flatten\n"
    graph = parse_spec(text)
    analysis = analyze(graph, {"batch": 2})
    training = training_cost(graph, analysis, "sgd", "fp32")
    reference = REFERENCE["resnet18_batch2_only_fc_trainable"]
    assert analysis.totals.trainable_params == reference["trainable_params"]
    assert training.totals.saved_activation_bytes == reference["saved_bytes"]
    assert training.totals.backward_macs == 2 * 512 * 1000  # fc's dL/dW only, batch 2


def test_largest_batch_fits_and_the_next_does_not():
    graph = load_spec(str(ROOT / "specs" / "resnet18.yaml"))
    memory = 2 * 2**30
    batch, totals = largest_batch(graph, {}, memory, "adam", "fp32")
    assert totals.memory_bytes <= memory
    over = training_cost(graph, analyze(graph, {"batch": batch + 1}), "adam", "fp32").totals
    assert over.memory_bytes > memory


def test_cli_training_outputs():
    runner = CliRunner()
    result = runner.invoke(cli, ["analyze", str(ROOT / "specs/resnet50.yaml"), "--training", "--batch", "32",
                                 "--optimizer", "adam", "--format", "json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    totals = document["training"]["totals"]
    assert totals["batch"] == 32 and totals["optimizer"] == "adam"
    # conv1 sees the image: its backward is the weight gradient only; every other MAC op
    # needs both gradients, so backward = 2 * forward - conv1's forward.
    conv1 = document["training"]["layers"][0]
    assert conv1["name"] == "conv1" and conv1["grad_input_macs"] == 0
    assert totals["backward_macs"] == 2 * totals["forward_macs"] - conv1["forward_macs"]
    assert totals["memory_bytes"] == (totals["weight_bytes"] + totals["gradient_bytes"] + totals["optimizer_bytes"]
                                      + totals["saved_activation_bytes"])
    table = runner.invoke(cli, ["analyze", str(ROOT / "specs/resnet18.yaml"), "--training", "--depth", "1",
                                "--fit", "8GiB"])
    assert table.exit_code == 0, table.output
    assert "Training memory" in table.output and "Largest batch" in table.output and "Backward MACs" in table.output


@pytest.mark.parametrize("size", ["-3GiB", "0"])
def test_cli_fit_must_be_positive(size):
    result = CliRunner().invoke(cli, ["analyze", str(ROOT / "specs/lenet5.yaml"), "--fit", size])
    assert result.exit_code == 2
    assert "not a positive size" in result.output


def test_cli_bad_fit_size():
    result = CliRunner().invoke(cli, ["analyze", str(ROOT / "specs/lenet5.yaml"), "--fit", "lots"])
    assert result.exit_code == 2
    assert "--fit" in result.output and "'lots' is not a quantity" in result.output


def _gemm_model(path: Path, batch: int | str) -> str:
    """x [batch, 8] -> Gemm (8 -> 3): 27 params; batch an int (fixed) or a dim name."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.zeros((3, 8), np.float32), "w")
    bias = numpy_helper.from_array(np.zeros((3,), np.float32), "b")
    graph = helper.make_graph([helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="fc", transB=1)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3])], [weight, bias])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return str(path)


def test_fit_refuses_a_fixed_batch(tmp_path):
    # Binding `batch` changes nothing when no input has it: "Largest batch 1 fits" would be a lie.
    fixed = _gemm_model(tmp_path / "fixed.onnx", 4)
    result = CliRunner().invoke(cli, ["analyze", fixed, "--fit", "1GiB"])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {fixed}: the model's batch is fixed at 4: --fit needs a symbolic "
                                    "batch dim\n  fix: feed the input with a symbolic batch (--input-shape x=batch,8)")
    assert "Traceback" not in result.output
    fed = CliRunner().invoke(cli, ["analyze", fixed, "--fit", "1GiB", "--input-shape", "x=batch,8", "--format", "json"])
    assert fed.exit_code == 0, fed.output
    assert json.loads(fed.stdout)["fit"]["largest_batch"] > 1


def test_fit_binds_a_batch_dim_of_another_name(tmp_path):
    # ONNX names its batch freely (N here); --batch binds it, and so must --fit.
    # Adam fp32: 27 params * (4 + 4 + 8) = 432 B fixed; saved: Gemm's input, 8 * 4 = 32 B a sample.
    named = _gemm_model(tmp_path / "named.onnx", "N")
    graph = load_model(named)
    batch, totals = largest_batch(graph, {}, 432 + 32 * 10, "adam", "fp32")
    assert (batch, totals.memory_bytes) == (10, 432 + 320)


def test_fit_too_small_is_quoted_in_human_units():
    result = CliRunner().invoke(cli, ["analyze", str(ROOT / "specs/lenet5.yaml"), "--fit", "1KiB"])
    assert result.exit_code == 2
    # LeNet-5, batch 1, Adam fp32: 61,706 params * 16 B + 49,040 B saved = 1,036,336 B = 1012.05 KiB,
    # printed with at most three digits before the point: 1,036,336 / 2**20 = 0.988 MiB
    assert "even batch 1 needs 0.99 MiB, more than the 1.00 KiB given" in result.stderr


def test_csv_with_training_has_the_per_layer_training_columns():
    result = CliRunner().invoke(cli, ["analyze", str(ROOT / "specs/lenet5.yaml"), "--training", "--batch", "2",
                                      "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0])[-2:] == ["backward_macs", "saved_activation_bytes"]
    graph = load_spec(str(ROOT / "specs" / "lenet5.yaml"))
    training = training_cost(graph, analyze(graph, {"batch": 2}), "adam", "fp32")
    assert [(r["name"], int(r["backward_macs"]), int(r["saved_activation_bytes"])) for r in rows] == [
        (x.name, x.backward_macs, x.saved_bytes) for x in training.layers]
    # conv1 sees the image: weight gradient only (its forward MACs); it saves the 2*1*32*32*4 B input.
    assert (rows[0]["name"], rows[0]["backward_macs"], rows[0]["saved_activation_bytes"]) == (
        "conv1", rows[0]["macs"], str(2 * 32 * 32 * 4))
    folded = CliRunner().invoke(cli, ["analyze", str(ROOT / "specs/resnet18.yaml"), "--training", "--depth", "1",
                                      "--format", "csv"])
    stages = {r["name"]: r for r in csv.DictReader(io.StringIO(folded.stdout))}
    assert int(stages["layer1"]["backward_macs"]) == 2 * int(stages["layer1"]["macs"])  # both gradients
    plain = CliRunner().invoke(cli, ["analyze", str(ROOT / "specs/lenet5.yaml"), "--format", "csv"])
    assert plain.stdout.splitlines()[0].endswith(",modelled")  # no training columns without --training


def test_backward_multiplies_the_operands_the_rule_names(tmp_path):
    """QLinearConv multiplies x (input 0) by w (input 3, after x's scale and zero point):
    its weight gradient costs its forward MACs again, as a float Conv's does."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
    from onnx_models import make_model, tensor_input

    from archcalc.readers.onnx import load_onnx

    scalars = [numpy_helper.from_array(np.array(v, dtype), name) for name, v, dtype in (
        ("xs", 0.1, np.float32), ("xz", 0, np.uint8), ("ws", 0.05, np.float32), ("wz", 0, np.int8),
        ("ys", 0.2, np.float32), ("yz", 0, np.uint8))]
    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.int8), "w")
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="quant"),
             helper.make_node("QLinearConv", ["xq", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["yq"], name="conv"),
             helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"], name="dequant")]
    path = tmp_path / "qconv.onnx"
    path.write_bytes(make_model(nodes, [tensor_input("x", [1, 3, 8, 8], TensorProto.FLOAT)], ["y"],
                                [*scalars, w], opset=13).SerializeToString())
    graph = load_onnx(str(path))
    analysis = analyze(graph)
    conv = next(layer for layer in training_cost(graph, analysis).layers if layer.name == "conv")
    macs = 4 * 6 * 6 * 3 * 3 * 3  # out channels x 6x6 positions x (3x3 kernel x 3 in channels)
    assert analysis.layer("conv").macs == macs
    assert (conv.grad_weight_macs, conv.grad_input_macs) == (macs, 0)  # x needs no gradient: it is the input


def _fixed_reshape_model(path: Path) -> str:
    """x [batch, 8, 1, 1] -> Reshape to the constant [1, 8] (an exporter that baked batch 1
    in, as onnx's zoo ResNet-50 does): 8*batch elements into 8, so it runs at batch 1 only."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    target = numpy_helper.from_array(np.array([1, 8], np.int64), "target")
    graph = helper.make_graph([helper.make_node("Reshape", ["x", "target"], ["y"], name="flat")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8, 1, 1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])], [target])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return str(path)


def test_a_reshape_fixed_at_batch_one_is_refused_at_another_batch(tmp_path):
    model = _fixed_reshape_model(tmp_path / "fixed_reshape.onnx")
    assert CliRunner().invoke(cli, ["analyze", model]).exit_code == 0  # batch 1: 8 elements each side
    result = CliRunner().invoke(cli, ["analyze", model, "--batch", "8"])
    assert result.exit_code == 2, result.output
    # 8 * 8 = 64 elements at batch 8 cannot become [1, 8] = 8.
    assert ("layer 'flat' (Reshape): cannot reshape [batch, 8, 1, 1] (64 elements at batch=8) to [1, 8] "
            "(8 elements)") in result.stderr
    assert "Traceback" not in result.output


def test_fit_refuses_a_model_that_runs_at_batch_one_only(tmp_path):
    model = _fixed_reshape_model(tmp_path / "fixed_reshape.onnx")
    result = CliRunner().invoke(cli, ["analyze", model, "--fit", "24GiB"])
    assert result.exit_code == 2, result.output
    assert "--fit needs a model that runs at every batch, and this one does not run at batch 2" in result.stderr
    assert "Largest batch" not in result.output


def test_fit_without_a_unit_is_refused():
    # '--fit 24' was 24 bytes; nobody quotes memory in bytes without saying so.
    result = CliRunner().invoke(cli, ["analyze", str(ROOT / "specs/lenet5.yaml"), "--fit", "24"])
    assert result.exit_code == 2
    assert "error: --fit: '24' has no unit: 24 B? a memory size needs one" in result.stderr
    assert "did you mean 24GiB?" in result.stderr
    assert CliRunner().invoke(cli, ["analyze", str(ROOT / "specs/lenet5.yaml"), "--fit", "24GiB"]).exit_code == 0


@pytest.mark.parametrize("option", [["--optimizer", "sgd"], ["--precision", "fp16"]])
def test_training_options_without_training_are_refused(option):
    result = CliRunner().invoke(cli, ["analyze", str(ROOT / "specs/lenet5.yaml"), *option])
    assert result.exit_code == 2
    assert f"{option[0]} sets the training step, which only --training or --fit counts" in result.output
    with_training = CliRunner().invoke(cli, ["analyze", str(ROOT / "specs/lenet5.yaml"), *option, "--training"])
    assert with_training.exit_code == 0
