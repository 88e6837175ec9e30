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
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper
from onnx_models import ints, loop_model, make_model, tensor_input, weight

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
# invalid ONNX: exit 2, naming the file, the node or field, and a fix


def relu_model(**kwargs) -> onnx.ModelProto:
    return make_model([helper.make_node("Relu", ["x"], ["y"], name="act")], [tensor_input("x", [2, 3])], ["y"],
                      **kwargs)


def bad_type(tensor: TensorProto) -> TensorProto:
    tensor.data_type = 999
    return tensor


def invalid_models() -> dict[str, tuple[onnx.ModelProto, list[str]]]:
    x = tensor_input("x", [2, 3])
    two_writers = [helper.make_node("Relu", ["x"], ["y"], name="first"),
                   helper.make_node("Neg", ["x"], ["y"], name="second")]
    chain = [helper.make_node("Relu", ["x"], ["a"], name="r"), helper.make_node("Neg", ["a"], ["y"], name="n")]
    then_reads_ghost = helper.make_graph([helper.make_node("Relu", ["ghost"], ["t"], name="inner")], "then", [],
                                         [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
    then_reads_later = helper.make_graph([helper.make_node("Relu", ["late"], ["t"], name="inner")], "then", [],
                                         [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
    else_ok = helper.make_graph([helper.make_node("Relu", ["x"], ["e"], name="inner")], "else", [],
                                [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)])
    cond = tensor_input("cond", [], TensorProto.BOOL)
    return {
        "two-writers": (make_model(two_writers, [x], ["y"]), ["layer 'second'", "'y'", "layer 'first'"]),
        "writes-an-initializer": (make_model([helper.make_node("Relu", ["x"], ["w"], name="act")], [x], ["w"],
                                             [weight("w", [2, 3])]), ["layer 'act'", "'w'", "initializer"]),
        "value-info-type": (make_model(chain, [x], ["y"], value_info=[
            helper.make_tensor_value_info("a", 999, [2, 3])]), ["value_info 'a'", "999"]),
        "input-type": (make_model(chain, [tensor_input("x", [2, 3], 999)], ["y"]), ["input 'x'", "999"]),
        "initializer-type": (make_model([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], [x], ["y"],
                                        [bad_type(weight("w", [3, 4]))]), ["initializer 'w'", "999"]),
        "constant-type": (make_model([helper.make_node("Constant", [], ["c"], name="const",
                                                       value=bad_type(weight("c", [2, 3]))),
                                      helper.make_node("Add", ["x", "c"], ["y"], name="add")], [x], ["y"]),
                          ["attribute 'value' of layer 'const'", "999"]),
        "undefined-input": (make_model([helper.make_node("Add", ["x", "ghost"], ["y"], name="add")], [x], ["y"]),
                            ["layer 'add'", "'ghost'"]),
        "read-before-written": (make_model(chain[::-1], [x], ["y"]), ["layer 'n'", "'a'", "earlier layer"]),
        "undefined-in-subgraph": (make_model([helper.make_node("If", ["cond"], ["y"], name="branch",
                                                               then_branch=then_reads_ghost, else_branch=else_ok)],
                                             [x, cond], ["y"]), ["layer 'inner'", "'ghost'", "layer 'branch'"]),
        "subgraph-reads-a-later-value": (make_model([
            helper.make_node("If", ["cond"], ["y"], name="branch", then_branch=then_reads_later, else_branch=else_ok),
            helper.make_node("Relu", ["x"], ["late"], name="after")], [x, cond], ["y", "late"]),
            ["layer 'inner'", "'late'", "subgraph 'then'"]),
        "output-never-written": (make_model(chain, [x], ["y", "nowhere"]), ["graph output 'nowhere'"]),
        "opset-30": (relu_model(opset=30, ir_version=10), ["opset_import", "opset 30", "default domain"]),
        "ml-opset-99": (relu_model(domains={"ai.onnx.ml": 99}), ["opset_import", "'ai.onnx.ml'", "opset 99"]),
        "ir-version-99": (relu_model(ir_version=99), ["ir_version", "99"]),
    }


INVALID = invalid_models()


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_onnx_exits_2_naming_file_field_and_fix(tmp_path, case):
    model, fragments = INVALID[case]
    path = str(tmp_path / f"{case}.onnx")
    onnx.save(model, path)
    result = CliRunner().invoke(cli, ["analyze", path])
    assert result.exit_code == 2, result.output
    message = result.output
    assert path in message and "fix:" in message and "Traceback" not in message
    for fragment in fragments:
        assert fragment in message


def test_outer_scope_reads_in_a_subgraph_are_valid(tmp_path):
    """A body reads what the enclosing graph wrote before the If, and an outer initializer."""
    then_branch = helper.make_graph([helper.make_node("Add", ["a", "w"], ["t"], name="inner")], "then", [],
                                    [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
    else_branch = helper.make_graph([helper.make_node("Neg", ["a"], ["e"], name="inner")], "else", [],
                                    [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)])
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="first"),
             helper.make_node("If", ["cond"], ["y"], name="branch", then_branch=then_branch, else_branch=else_branch)]
    model = make_model(nodes, [tensor_input("x", [2, 3]), tensor_input("cond", [], TensorProto.BOOL)],
                       [tensor_input("y", [2, 3])], [weight("w", [2, 3])])
    onnx.checker.check_model(model)  # valid ONNX, to onnx's own checker too
    path = str(tmp_path / "outer.onnx")
    onnx.save(model, path)
    assert analyze(load_onnx(path)).layer("branch").modelled


def test_undeclared_custom_domain_goes_on_with_a_warning(tmp_path):
    model = make_model([helper.make_node("Fancy", ["x"], ["y"], name="fancy", domain="com.example")],
                       [tensor_input("x", [2, 3])], ["y"])
    path = str(tmp_path / "undeclared.onnx")
    onnx.save(model, path)
    graph = load_onnx(path)
    assert any("'fancy'" in w and "com.example" in w and "opset_import" in w for w in graph.metadata["warnings"])
    assert CliRunner().invoke(cli, ["analyze", path]).exit_code == 0


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
