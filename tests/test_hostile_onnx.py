"""Hostile ONNX files: invalid ones are refused, huge but valid dimensions and names cost
what small ones cost, and --training goes through control flow.

A blow-up is run as `archcalc analyze` in a subprocess under a time and an address-space
limit, so a regression fails the test instead of hanging the suite or the machine.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys

import onnx
from click.testing import CliRunner
from onnx import TensorProto, helper
from onnx_models import ints, make_model, tensor_input, weight
from test_control_flow import loop_model

from archcalc.cli.main import cli
from archcalc.engine.inference import analyze
from archcalc.engine.training import training_cost
from archcalc.readers.onnx import load_onnx

# Generous: each case below takes about a second and well under 400 MB when it is right.
TIMEOUT_SECONDS = 60
MEMORY_LIMIT = 1 << 30
HUGE = 10_000_000


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_limited(*args: str) -> subprocess.CompletedProcess:
    """`python -m archcalc ARGS` under the time and memory limits."""
    return subprocess.run([sys.executable, "-m", "archcalc", *args], capture_output=True, text=True,
                          timeout=TIMEOUT_SECONDS, preexec_fn=_limited)


def external_weight(name: str, dims: list[int]) -> TensorProto:
    """A float weight whose data sits in a file that does not exist: the model stays small,
    and analysis never reads weights."""
    tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=dims, data_location=TensorProto.EXTERNAL)
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "absent.bin"
    return tensor


def analyze_json(path: str) -> dict:
    result = run_limited("analyze", "--format", "json", path)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


# ---------------------------------------------------------------------------------------
# receptive fields of huge kernels


def test_huge_transposed_kernel_field_is_computed_per_phase_not_per_tap(tmp_path):
    """Output o of a stride-2 transposed convolution with kernel K reads K/2 inputs: output 0
    those from -(K/2 - 1) to 0."""
    nodes = [helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="up", strides=[2])]
    model = make_model(nodes, [tensor_input("x", [1, 1, 4])], ["y"], [external_weight("w", [1, 1, HUGE])])
    path = str(tmp_path / "tconv.onnx")
    onnx.save(model, path)
    (layer,) = analyze_json(path)["layers"]
    assert layer["receptive_field"] == [{"size": HUGE // 2, "jump": 0.5, "start": -(HUGE // 2 - 1) / 2}]


def test_huge_kernel_after_upsampling_field_is_computed_per_phase_not_per_tap(tmp_path):
    """After a 2x upsampling (two output phases) a kernel of K reads K/2 + 1 inputs at most;
    output 0 those from 0 to K/2 - 1."""
    nodes = [helper.make_node("ConvTranspose", ["x", "w_up"], ["u"], name="up", strides=[2]),
             helper.make_node("Conv", ["u", "w"], ["y"], name="conv", dilations=[1])]
    model = make_model(nodes, [tensor_input("x", [1, 1, HUGE])], ["y"],
                       [external_weight("w_up", [1, 1, 2]), external_weight("w", [1, 1, HUGE])])
    path = str(tmp_path / "up_conv.onnx")
    onnx.save(model, path)
    layers = analyze_json(path)["layers"]
    assert layers[1]["receptive_field"] == [{"size": HUGE // 2 + 1, "jump": 0.5, "start": (HUGE // 2 - 1) / 2}]


# ---------------------------------------------------------------------------------------
# --training through control flow


def test_training_through_a_loop_body_counts_its_layers(tmp_path):
    """h -> relu(h @ W + B) three times, then y = h @ W: no KeyError on the body's layers;
    the body's MatMul needs both gradients (its carried input depends on W after the first
    run), counted for every run; the Loop's figures are its body's."""
    model = loop_model("M", "", initializers=[ints("M", 3)])
    path = str(tmp_path / "loop.onnx")
    onnx.save(model, path)
    graph = load_onnx(path)
    analysis = analyze(graph, {"batch": 3})
    step = training_cost(graph, analysis)
    layers = {layer.name: layer for layer in step.layers}
    body_macs = 3 * (3 * 4 * 4)  # three runs of [3, 4] @ [4, 4]
    assert (layers["loop/body/mm"].grad_input_macs, layers["loop/body/mm"].grad_weight_macs) == (body_macs,) * 2
    assert layers["loop"].backward_macs == 2 * body_macs and layers["loop"].on_gradient_path
    head_macs = 3 * 4 * 4
    assert step.totals.forward_macs == body_macs + head_macs
    assert step.totals.backward_macs == 2 * body_macs + 2 * head_macs  # body layers are in the Loop's figures
    assert step.totals.saved_activation_bytes == layers["loop"].saved_bytes + layers["head"].saved_bytes > 0

    result = CliRunner().invoke(cli, ["analyze", path, "--training", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["training"]["totals"]["backward_macs"] == 2 * (3 * 4 * 4) + 2 * 4 * 4


def test_training_through_an_if_costs_its_branches(tmp_path):
    """An If whose branches hold a weight: its layers are costed, and the If is on the path."""
    then_branch = helper.make_graph([helper.make_node("MatMul", ["x", "Wt"], ["t"], name="mm")], "then", [],
                                    [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)],
                                    [weight("Wt", [4, 4])])
    else_branch = helper.make_graph([helper.make_node("Relu", ["x"], ["e"], name="relu")], "else", [],
                                    [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)])
    nodes = [helper.make_node("If", ["cond"], ["y"], name="branch", then_branch=then_branch,
                              else_branch=else_branch)]
    model = make_model(nodes, [tensor_input("x", [2, 4]), tensor_input("cond", [], TensorProto.BOOL)], ["y"])
    path = str(tmp_path / "if.onnx")
    onnx.save(model, path)
    graph = load_onnx(path)
    step = training_cost(graph, analyze(graph))
    layers = {layer.name: layer for layer in step.layers}
    assert layers["branch/then_branch/mm"].grad_weight_macs == 2 * 4 * 4
    assert layers["branch/then_branch/mm"].grad_input_macs == 0  # x is the graph input
    assert not layers["branch/else_branch/relu"].on_gradient_path
    assert layers["branch"].on_gradient_path and step.totals.backward_macs == 2 * 4 * 4


# ---------------------------------------------------------------------------------------
# long names


def test_ten_megabyte_names_cost_linear_time(tmp_path):
    """A 10 MB node name (and graph name, and a warning quoting a layer name) is valid ONNX:
    the table shows its head and tail, JSON keeps it whole."""
    long_name, other = "a" * HUGE, "b" * HUGE
    nodes = [helper.make_node("Relu", ["x"], ["r"], name=long_name),
             helper.make_node("Mystery", ["r"], ["y"], name=other, domain="com.example")]
    model = make_model(nodes, [tensor_input("x", [2, 3])], ["y"], domains={"com.example": 1}, name="g" * HUGE)
    path = str(tmp_path / "names.onnx")
    onnx.save(model, path)
    table = run_limited("analyze", "--training", path)
    assert table.returncode == 0, table.stderr[-2000:]
    assert len(table.stdout) + len(table.stderr) < 100_000
    assert "chars]" in table.stdout and "Mystery" in table.stdout + table.stderr
    document = analyze_json(path)
    assert [layer["name"] for layer in document["layers"]] == [long_name, other]
